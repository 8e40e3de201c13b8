use std::io::{Read as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use rustls::{ClientConnection, ServerConnection};

use super::*;
use crate::{CertificateAuthority, Clock, ManualClock, SystemClock};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const ALPN: &[&[u8]] = &[b"xroad-rs/1"];

#[derive(Debug)]
enum Outcome {
    Connected {
        /// SHA-256 of the client certificate the server saw.
        server_saw: Option<[u8; 32]>,
        alpn: Option<Vec<u8>>,
    },
    ServerRejected(rustls::Error),
    ClientRejected(rustls::Error),
}

/// Runs a real TLS handshake between the two configs entirely in memory, then one
/// request/response round trip (which also delivers any session tickets).
fn connect(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>, name: &str) -> Outcome {
    let mut client = ClientConnection::new(
        client.clone(),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(server.clone()).unwrap();
    client.writer().write_all(b"ping").unwrap();

    let mut got_ping = false;
    for _ in 0..20 {
        if let Err(e) = pump_client_to_server(&mut client, &mut server) {
            return Outcome::ServerRejected(e);
        }
        if !server.is_handshaking() && !got_ping {
            let mut buf = [0u8; 4];
            server.reader().read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            server.writer().write_all(b"pong").unwrap();
            got_ping = true;
        }
        if let Err(e) = pump_server_to_client(&mut server, &mut client) {
            return Outcome::ClientRejected(e);
        }
        let mut buf = [0u8; 4];
        if got_ping && client.reader().read_exact(&mut buf).is_ok() {
            assert_eq!(&buf, b"pong");
            return Outcome::Connected {
                server_saw: server
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| cert_sha256(c)),
                alpn: client.alpn_protocol().map(<[u8]>::to_vec),
            };
        }
    }
    panic!("handshake did not finish");
}

fn pump_client_to_server(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let mut rd = wire.as_slice();
    while !rd.is_empty() {
        server.read_tls(&mut rd).unwrap();
        server.process_new_packets()?;
    }
    Ok(())
}

fn pump_server_to_client(
    server: &mut ServerConnection,
    client: &mut ClientConnection,
) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut wire).unwrap();
    }
    let mut rd = wire.as_slice();
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets()?;
    }
    Ok(())
}

fn identity(ca: &CertificateAuthority, seed: u8, name: &str, clock: &dyn Clock) -> TlsIdentity {
    let key = SigningKey::from_seed([seed; 32]);
    let cert = ca
        .issue(
            name,
            &key.public_key().to_spki_der(),
            &["127.0.0.1".to_owned()],
            DAY,
            clock,
        )
        .unwrap();
    TlsIdentity::new(vec![cert], key)
}

fn pins(ids: &[&TlsIdentity]) -> Arc<dyn PinPolicy> {
    Arc::new(ids.iter().map(|id| id.leaf_sha256()).collect::<PinSet>())
}

struct Pair {
    client: TlsIdentity,
    server: TlsIdentity,
}

fn pair() -> Pair {
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    Pair {
        client: identity(&ca, 1, "TEST/GOV/a/ss1", &SystemClock),
        server: identity(&ca, 2, "TEST/GOV/b/ss2", &SystemClock),
    }
}

fn pinned(client_pins: Arc<dyn PinPolicy>, server_pins: Arc<dyn PinPolicy>, p: &Pair) -> Outcome {
    let client = Arc::new(pinned_client_config(&p.client, client_pins, ALPN).unwrap());
    let server = Arc::new(pinned_server_config(&p.server, server_pins, ALPN).unwrap());
    // Any name: pinned connections do not check it.
    connect(&client, &server, "peer.invalid")
}

fn is_pin_failure(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    )
}

#[test]
fn pinned_mtls_succeeds_when_both_pins_match() {
    let p = pair();
    match pinned(pins(&[&p.server]), pins(&[&p.client]), &p) {
        Outcome::Connected { server_saw, alpn } => {
            assert_eq!(server_saw, Some(p.client.leaf_sha256()));
            assert_eq!(alpn.as_deref(), Some(&b"xroad-rs/1"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pinned_mtls_fails_when_server_does_not_pin_client() {
    let p = pair();
    match pinned(pins(&[&p.server]), pins(&[&p.server]), &p) {
        Outcome::ServerRejected(e) => assert!(is_pin_failure(&e), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pinned_mtls_fails_when_client_does_not_pin_server() {
    let p = pair();
    match pinned(pins(&[&p.client]), pins(&[&p.client]), &p) {
        Outcome::ClientRejected(e) => assert!(is_pin_failure(&e), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pinned_server_requires_a_client_certificate() {
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    let server_id = identity(&ca, 2, "ss2", &SystemClock);
    let server = Arc::new(pinned_server_config(&server_id, pins(&[]), ALPN).unwrap());
    let client = Arc::new(client_config_trusting(&[ca.certificate_der().to_vec()], ALPN).unwrap());
    match connect(&client, &server, "127.0.0.1") {
        Outcome::ServerRejected(rustls::Error::NoCertificatesPresented) => {}
        other => panic!("{other:?}"),
    }
}

#[derive(Debug, Default)]
struct LivePins(Mutex<HashSet<[u8; 32]>>);

impl PinPolicy for LivePins {
    fn allows(&self, cert_sha256: &[u8; 32]) -> bool {
        self.0.lock().unwrap().contains(cert_sha256)
    }
}

#[test]
fn removing_a_pin_cuts_off_the_next_connection() {
    let p = pair();
    let server_pins = Arc::new(LivePins::default());
    server_pins.0.lock().unwrap().insert(p.client.leaf_sha256());
    let client = Arc::new(pinned_client_config(&p.client, pins(&[&p.server]), ALPN).unwrap());
    let server = Arc::new(pinned_server_config(&p.server, server_pins.clone(), ALPN).unwrap());

    assert!(matches!(
        connect(&client, &server, "x.invalid"),
        Outcome::Connected { .. }
    ));
    server_pins.0.lock().unwrap().clear();
    // Same configs, so a resumable session would be offered if resumption were on.
    match connect(&client, &server, "x.invalid") {
        Outcome::ServerRejected(e) => assert!(is_pin_failure(&e), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pinned_certificate_outside_its_validity_is_refused_both_ways() {
    let issued = ManualClock::at_unix(1_800_000_000);
    let ca = CertificateAuthority::generate("TEST", 10 * DAY, &issued).unwrap();
    let client_id = identity(&ca, 1, "TEST/GOV/a/ss1", &issued);
    let server_id = identity(&ca, 2, "TEST/GOV/b/ss2", &issued);
    // The server's clock moves below; the client's stays at the time of issue.
    let now = ManualClock::at_unix(1_800_000_000);
    let client_live = LiveIdentity::new(client_id.clone(), Arc::new(issued.clone())).unwrap();
    let server_live = LiveIdentity::new(server_id.clone(), Arc::new(now.clone())).unwrap();
    let client = Arc::new(
        client_live
            .pinned_client_config(pins(&[&server_id]), ALPN)
            .unwrap(),
    );
    let server = Arc::new(
        server_live
            .pinned_server_config(pins(&[&client_id]), ALPN)
            .unwrap(),
    );
    assert!(matches!(
        connect(&client, &server, "x.invalid"),
        Outcome::Connected { .. }
    ));

    // The client's clock is past both certificates (issued for one day): it refuses the server.
    let late = ManualClock::at_unix(1_800_000_000 + 2 * 86_400);
    let late_client = Arc::new(
        LiveIdentity::new(client_id.clone(), Arc::new(late.clone()))
            .unwrap()
            .pinned_client_config(pins(&[&server_id]), ALPN)
            .unwrap(),
    );
    match connect(&late_client, &server, "x.invalid") {
        Outcome::ClientRejected(rustls::Error::InvalidCertificate(CertificateError::Expired)) => {}
        other => panic!("{other:?}"),
    }
    // The server's clock is past them: it refuses the client.
    now.set(late.now());
    match connect(&client, &server, "x.invalid") {
        Outcome::ServerRejected(rustls::Error::InvalidCertificate(CertificateError::Expired)) => {}
        other => panic!("{other:?}"),
    }
    // Before a certificate's start (less the hour it is backdated) it is refused too.
    now.set(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 2 * 3600));
    match connect(&client, &server, "x.invalid") {
        Outcome::ServerRejected(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        )) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replaced_live_identity_is_presented_from_the_next_handshake() {
    let p = pair();
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    let renewed = identity(&ca, 3, "TEST/GOV/b/ss2", &SystemClock);
    let server_live = LiveIdentity::new(p.server.clone(), Arc::new(SystemClock)).unwrap();
    let server = Arc::new(
        server_live
            .pinned_server_config(pins(&[&p.client]), ALPN)
            .unwrap(),
    );
    let client_live = LiveIdentity::new(p.client.clone(), Arc::new(SystemClock)).unwrap();
    // The client accepts the old and the renewed server certificate, as during a renewal.
    let client = Arc::new(
        client_live
            .pinned_client_config(pins(&[&p.server, &renewed]), ALPN)
            .unwrap(),
    );
    assert!(matches!(
        connect(&client, &server, "x.invalid"),
        Outcome::Connected { .. }
    ));
    server_live.replace(renewed.clone()).unwrap();
    assert_eq!(server_live.leaf_sha256(), renewed.leaf_sha256());
    assert!(matches!(
        connect(&client, &server, "x.invalid"),
        Outcome::Connected { .. }
    ));
    // A client that pins only the old certificate now refuses the server.
    let old_only = Arc::new(
        client_live
            .pinned_client_config(pins(&[&p.server]), ALPN)
            .unwrap(),
    );
    match connect(&old_only, &server, "x.invalid") {
        Outcome::ClientRejected(e) => assert!(is_pin_failure(&e), "{e}"),
        other => panic!("{other:?}"),
    }
    // And the client side presents its replacement too.
    let client_renewed = identity(&ca, 4, "TEST/GOV/a/ss1", &SystemClock);
    client_live.replace(client_renewed.clone()).unwrap();
    let server2 = Arc::new(
        server_live
            .pinned_server_config(pins(&[&client_renewed]), ALPN)
            .unwrap(),
    );
    match connect(&client, &server2, "x.invalid") {
        Outcome::Connected { server_saw, .. } => {
            assert_eq!(server_saw, Some(client_renewed.leaf_sha256()));
        }
        other => panic!("{other:?}"),
    }
}

/// Always presents one certificate and key, matching or not.
#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS 1.3 client that trusts `p.server` by pin, its client certificate still to choose.
fn pinned_client(p: &Pair) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier {
            policy: pins(&[&p.server]),
            algorithms: provider().signature_verification_algorithms,
            mandatory: true,
            check_validity: true,
        }))
}

/// [`pinned_client`] presenting `p.client`'s certificate but signing with another key
/// (pinned_client_config would refuse the mismatch, so the config is built by hand).
fn thief(p: &Pair) -> ClientConfig {
    let other_key = TlsIdentity::new(vec![], SigningKey::from_seed([9; 32]));
    let signer = provider()
        .key_provider
        .load_private_key(other_key.rustls_key().unwrap())
        .unwrap();
    let stolen = rustls::sign::CertifiedKey::new(p.client.rustls_chain(), signer);
    pinned_client(p).with_client_cert_resolver(Arc::new(FixedClientCert(Arc::new(stolen))))
}

#[test]
fn pinned_certificate_without_its_key_is_rejected() {
    let p = pair();
    let server = Arc::new(pinned_server_config(&p.server, pins(&[&p.client]), ALPN).unwrap());
    match connect(&Arc::new(thief(&p)), &server, "x.invalid") {
        Outcome::ServerRejected(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        )) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_trusting_client_connects_to_ca_issued_server() {
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    let server_id = identity(&ca, 2, "registry", &SystemClock);
    let server = Arc::new(server_config(&server_id, ALPN).unwrap());
    let client = Arc::new(client_config_trusting(&[ca.certificate_der().to_vec()], ALPN).unwrap());
    match connect(&client, &server, "127.0.0.1") {
        Outcome::Connected { server_saw, alpn } => {
            assert_eq!(server_saw, None);
            assert_eq!(alpn.as_deref(), Some(&b"xroad-rs/1"[..]));
        }
        other => panic!("{other:?}"),
    }
    // Right CA, wrong name.
    match connect(&client, &server, "127.0.0.2") {
        Outcome::ClientRejected(rustls::Error::InvalidCertificate(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn ca_trusting_client_rejects_server_of_another_ca() {
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    let client = Arc::new(client_config_trusting(&[ca.certificate_der().to_vec()], ALPN).unwrap());
    // A rogue CA with another name is unknown; one with the same name is found
    // by name but its signature does not verify under the real CA's key.
    for (instance, expected) in [
        ("OTHER", CertificateError::UnknownIssuer),
        ("TEST", CertificateError::BadSignature),
    ] {
        let rogue = CertificateAuthority::generate(instance, DAY, &SystemClock).unwrap();
        let server_id = identity(&rogue, 2, "registry", &SystemClock);
        let server = Arc::new(server_config(&server_id, ALPN).unwrap());
        match connect(&client, &server, "127.0.0.1") {
            Outcome::ClientRejected(rustls::Error::InvalidCertificate(e)) => {
                assert_eq!(e, expected)
            }
            other => panic!("{instance}: {other:?}"),
        }
    }
}

#[test]
fn ca_trusting_client_rejects_expired_server_certificate() {
    // Issued in 2001 for one day.
    let clock = ManualClock::at_unix(1_000_000_000);
    let ca = CertificateAuthority::generate("TEST", 100 * 365 * DAY, &clock).unwrap();
    let server_id = identity(&ca, 2, "registry", &clock);
    let server = Arc::new(server_config(&server_id, ALPN).unwrap());
    let client = Arc::new(client_config_trusting(&[ca.certificate_der().to_vec()], ALPN).unwrap());
    match connect(&client, &server, "127.0.0.1") {
        Outcome::ClientRejected(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_config_needs_a_trust_anchor() {
    assert!(client_config_trusting(&[], ALPN).is_err());
    assert!(client_config_trusting(&[b"garbage".to_vec()], ALPN).is_err());
}

#[test]
fn debug_redacts_identity_key() {
    let p = pair();
    let debug = format!("{:?}", p.client);
    assert!(debug.contains(&hex::encode(p.client.leaf_sha256())));
    let pem = p.client.key.to_pkcs8_pem().unwrap();
    assert!(!debug.contains(pem.lines().nth(1).unwrap()));
}

/// The client proxy's HTTPS for information systems: a system may present no certificate or
/// any certificate (which one is registered is checked per request), but never a certificate
/// without its key.
#[test]
fn information_systems_present_any_certificate_or_none_but_never_one_without_its_key() {
    let p = pair();
    let server = Arc::new(information_system_server_config(&p.server, ALPN).unwrap());
    // A certificate of its own (pinned_client_config pins the server by hash).
    let with_cert = Arc::new(pinned_client_config(&p.client, pins(&[&p.server]), ALPN).unwrap());
    match connect(&with_cert, &server, "x.invalid") {
        Outcome::Connected { server_saw, .. } => {
            assert_eq!(server_saw, Some(p.client.leaf_sha256()));
        }
        other => panic!("{other:?}"),
    }
    // No certificate.
    let without = pinned_client(&p).with_no_client_auth();
    match connect(&Arc::new(without), &server, "x.invalid") {
        Outcome::Connected { server_saw, .. } => assert_eq!(server_saw, None),
        other => panic!("{other:?}"),
    }
    // Someone's certificate, signed with another key.
    match connect(&Arc::new(thief(&p)), &server, "x.invalid") {
        Outcome::ServerRejected(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        )) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn replaced_ca_roots_apply_to_the_next_handshake_of_the_same_client() {
    let clock = ManualClock::at_unix(1_800_000_000);
    let old = CertificateAuthority::generate("TEST", 365 * DAY, &clock).unwrap();
    let (new, cross) = old.successor("TEST", 365 * DAY, &clock).unwrap();
    let old_ca = old.certificate_der().to_vec();
    let new_ca = new.certificate_der().to_vec();
    let registry = identity(&new, 3, "registry", &clock);
    let with_cross = TlsIdentity::new(
        vec![registry.cert_chain[0].clone(), cross],
        registry.key().clone(),
    );
    let serve = |id: &TlsIdentity| Arc::new(server_config(id, ALPN).unwrap());

    let roots = CaRoots::new(std::slice::from_ref(&old_ca)).unwrap();
    let client = Arc::new(roots.client_config(ALPN, Arc::new(clock.clone())).unwrap());
    // Trusting the old CA only: the new CA's certificate passes with the cross-certificate.
    assert!(matches!(
        connect(&client, &serve(&with_cross), "127.0.0.1"),
        Outcome::Connected { .. }
    ));
    assert!(matches!(
        connect(&client, &serve(&registry), "127.0.0.1"),
        Outcome::ClientRejected(_)
    ));

    // The old CA withdrawn: the same client now needs the new one, and refuses the old.
    assert!(roots.replace(std::slice::from_ref(&new_ca)).unwrap());
    assert!(!roots.replace(std::slice::from_ref(&new_ca)).unwrap());
    assert_eq!(roots.ders(), [new_ca]);
    assert!(matches!(
        connect(&client, &serve(&registry), "127.0.0.1"),
        Outcome::Connected { .. }
    ));
    let old_registry = identity(&old, 4, "registry", &clock);
    assert!(matches!(
        connect(&client, &serve(&old_registry), "127.0.0.1"),
        Outcome::ClientRejected(_)
    ));
    assert!(CaRoots::new(&[]).is_err());
    assert!(roots.replace(&[b"garbage".to_vec()]).is_err());
}

#[test]
fn keys_inside_softhsm_sign_messages_and_both_sides_of_a_pinned_handshake() {
    use crate::pkcs11::{Token, init_token, testing};
    use crate::{Domain, Error};
    let Some(module) = testing::in_own_softhsm(
        "tls::tests::keys_inside_softhsm_sign_messages_and_both_sides_of_a_pinned_handshake",
    ) else {
        return;
    };
    init_token(&module, "xroad-test", "so-secret-1", "user-secret-1").unwrap();
    let wrong = Token::open(&module, "xroad-test", "not-the-pin").unwrap_err();
    assert!(!wrong.to_string().contains("not-the-pin"), "{wrong}");
    assert!(Token::open(&module, "no-such-token", "user-secret-1").is_err());
    let token = Token::open(&module, "xroad-test", "user-secret-1").unwrap();

    // A key made inside the token signs there; it cannot be exported.
    let member = token.generate("member").unwrap();
    assert!(member.in_module());
    let signature = member.try_sign(Domain::RequestHeader, b"header").unwrap();
    member
        .public_key()
        .verify(Domain::RequestHeader, b"header", &signature)
        .unwrap();
    assert!(matches!(member.to_pkcs8_der(), Err(Error::KeyFormat(_))));
    assert!(format!("{member:?}").contains("xroad-test"));
    let (again, made) = token.key_or_generate("member").unwrap();
    assert!(!made);
    assert_eq!(again.key_id(), member.key_id());
    assert!(token.generate("member").is_err());
    // Relabelled, it is the same key, and what was handed out before still signs.
    token.relabel("member", "member-retired").unwrap();
    assert!(token.key("member").is_err());
    assert_eq!(
        token.key("member-retired").unwrap().key_id(),
        member.key_id()
    );
    // Keys under a label: that label and `label/…`, not another label that starts alike.
    token.generate("member-retired/2").unwrap();
    token.generate("member-retiredx").unwrap();
    let under: Vec<String> = token
        .keys_under("member-retired")
        .unwrap()
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(under, ["member-retired", "member-retired/2"]);
    assert!(token.keys_under("member").unwrap().is_empty());
    let signature = member.sign(Domain::RequestHeader, b"later");
    member
        .public_key()
        .verify(Domain::RequestHeader, b"later", &signature)
        .unwrap();

    // Both TLS keys in the token: a pinned handshake each way.
    let ca = CertificateAuthority::generate("TEST", DAY, &SystemClock).unwrap();
    let in_token = |label: &str, name: &str| {
        let key = token.generate(label).unwrap();
        let cert = ca
            .issue(
                name,
                &key.public_key().to_spki_der(),
                &["127.0.0.1".to_owned()],
                DAY,
                &SystemClock,
            )
            .unwrap();
        TlsIdentity::new(vec![cert], key)
    };
    let client_id = in_token("tls-client", "TEST/GOV/a/ss1");
    let server_id = in_token("tls-server", "TEST/GOV/b/ss2");
    let live = |id: &TlsIdentity| LiveIdentity::new(id.clone(), Arc::new(SystemClock)).unwrap();
    let client = Arc::new(
        live(&client_id)
            .pinned_client_config(pins(&[&server_id]), ALPN)
            .unwrap(),
    );
    let server = Arc::new(
        live(&server_id)
            .pinned_server_config(pins(&[&client_id]), ALPN)
            .unwrap(),
    );
    match connect(&client, &server, "x.invalid") {
        Outcome::Connected { server_saw, .. } => {
            assert_eq!(server_saw, Some(client_id.leaf_sha256()));
        }
        other => panic!("{other:?}"),
    }
}
