//! Test harness: a registry started in-process on `127.0.0.1:0`, a simulated security server
//! that builds enrolment requests, and the workspace's `eventually` (`runtime::testing`) instead
//! of sleeps.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use central_registry::{Registry, RegistryAdmin, RegistryConfig, RegistryError, init_data_dir};
use certs::{Clock as _, Domain, ManualClock, SigningKey};
use globalconf::signed::VerifiedConf;
use globalconf::{Anchor, SecurityServerId};
use prost::Message as _;
use proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use runtime::testing::eventually;

/// Runs the `central-registry` binary with `--config config` and `args`: whether it succeeded,
/// its stdout and its stderr.
pub fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_central-registry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn https_client(anchor: &Anchor) -> runtime::HttpClient {
    let tls = certs::client_config_trusting(&anchor.ca_certificates_der(), &[]).unwrap();
    runtime::HttpClient::https(tls)
}

/// A registry running in this process.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub config: RegistryConfig,
    pub clock: ManualClock,
    pub admin: RegistryAdmin,
    pub public_url: String,
    pub admin_url: String,
    pub admin_token: String,
    pub anchor: Anchor,
    pub https: runtime::HttpClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RegistryError>>>,
}

impl TestRegistry {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut RegistryConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_addr = public.local_addr().unwrap();
        let admin_addr = admin_listener.local_addr().unwrap();
        let public_url = format!("https://127.0.0.1:{}", public_addr.port());
        let mut config = RegistryConfig {
            instance: "JP".into(),
            data_dir: dir.path().join("data"),
            listen: public_addr,
            admin_listen: admin_addr,
            public_urls: vec![public_url.clone()],
            ..RegistryConfig::default()
        };
        tweak(&mut config);
        let clock = ManualClock::new(SystemTime::now());
        let summary = init_data_dir(&config, &clock).unwrap();
        let anchor = Anchor::load(&summary.anchor_path).unwrap();
        let registry = Registry::open(config.clone(), Arc::new(clock.clone())).unwrap();
        let admin = registry.admin();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(registry.run(public, admin_listener, async move {
            let _ = stopped.await;
        }));
        let admin_token = central_registry::DataDir::new(&config.data_dir)
            .read_admin_token()
            .unwrap();
        let https = https_client(&anchor);
        let registry = Self {
            dir,
            config,
            clock,
            admin,
            public_url,
            admin_url: central_registry::admin_url(admin_addr),
            admin_token,
            anchor,
            https,
            stop: Some(stop),
            task: Some(task),
        };
        let health = format!("{}/health", registry.public_url);
        eventually("registry health", || async {
            registry
                .https
                .get(&health, None)
                .await
                .ok()
                .filter(|r| r.is_success())
        })
        .await;
        registry
    }

    /// Stops serving and waits for the drain to finish.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// GET /v1/global-configuration over HTTPS, verified under the anchor `init` wrote.
    pub async fn fetch(&self) -> (Bytes, VerifiedConf) {
        fetch_from(&self.https, &self.public_url, &self.anchor).await
    }

    pub async fn serial(&self) -> u64 {
        self.fetch().await.1.serial()
    }

    pub async fn post_enrollment(&self, body: Vec<u8>) -> runtime::Response {
        self.post("/v1/enrollments", body).await
    }

    /// POSTs protobuf bytes to a public endpoint, as a security server does.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> runtime::Response {
        self.https
            .post(
                &format!("{}{path}", self.public_url),
                None,
                "application/x-protobuf",
                body.into(),
            )
            .await
            .unwrap()
    }

    pub async fn enrollment_status(&self, id: &str) -> runtime::Response {
        let encoded = id.replace('/', "%2F");
        self.https
            .get(
                &format!("{}/v1/enrollments/{encoded}", self.public_url),
                None,
            )
            .await
            .unwrap()
    }
}

pub async fn fetch_from(
    client: &runtime::HttpClient,
    base: &str,
    anchor: &Anchor,
) -> (Bytes, VerifiedConf) {
    let r = client
        .get(&format!("{base}/v1/global-configuration"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type.as_deref(), Some("application/x-protobuf"));
    let conf = globalconf::signed::verify(&r.body, anchor).unwrap();
    let header: u64 = r.headers["x-configuration-serial"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(header, conf.serial());
    (r.body, conf)
}

/// A security server about to enrol: its member signing key and TLS key.
pub struct Enrollee {
    pub id: SecurityServerId,
    pub member_key: SigningKey,
    pub tls_key: SigningKey,
    pub addresses: Vec<String>,
}

impl Enrollee {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.parse().unwrap(),
            member_key: SigningKey::generate().unwrap(),
            tls_key: SigningKey::generate().unwrap(),
            addresses: vec!["127.0.0.1:5500".into(), "ss.example:5500".into()],
        }
    }

    pub fn request_bytes(&self, created_at: i64) -> Vec<u8> {
        pb::EnrollmentRequest {
            server_id: self.id.to_string(),
            addresses: self.addresses.clone(),
            tls_public_key_der: self.tls_key.public_key().to_spki_der(),
            member_signing_public_key: self.member_key.public_key().as_bytes().to_vec(),
            created_at,
        }
        .encode_to_vec()
    }

    /// The `SignedEnrollmentRequest` bytes, signed by the member key.
    pub fn signed(&self, created_at: i64, token: &str) -> Vec<u8> {
        let request = self.request_bytes(created_at);
        let signature = self.member_key.sign(Domain::EnrollmentRequest, &request);
        pb::SignedEnrollmentRequest {
            request,
            signature: signature.to_vec(),
            token: token.into(),
        }
        .encode_to_vec()
    }

    /// Claims the member key but is signed by another key.
    pub fn forged(&self, created_at: i64) -> Vec<u8> {
        let request = self.request_bytes(created_at);
        let signature = SigningKey::generate()
            .unwrap()
            .sign(Domain::EnrollmentRequest, &request);
        pb::SignedEnrollmentRequest {
            request,
            signature: signature.to_vec(),
            token: String::new(),
        }
        .encode_to_vec()
    }
}

/// An enrolled server (approved with a token) and its certificate's pin.
pub async fn enrolled(registry: &TestRegistry, id: &str) -> (Enrollee, [u8; 32]) {
    let server = Enrollee::new(id);
    let token = registry.admin.issue_token(server.id.clone()).await.unwrap();
    let now = registry.clock.unix_now();
    let r = registry
        .post_enrollment(server.signed(now, &token.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, conf) = registry.fetch().await;
    let pin = conf.conf().server(&server.id).unwrap().tls_cert_sha256;
    (server, pin)
}

pub fn error_type(r: &runtime::Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["type"].as_str().unwrap_or_default().to_owned()
}

/// A `SignedRenewalRequest` for `new_key`, signed by `current` and `new_signer`.
pub fn renewal(
    id: &str,
    current: &SigningKey,
    new_key: &SigningKey,
    new_signer: &SigningKey,
    created_at: i64,
    in_use: bool,
) -> Vec<u8> {
    let request = pb::RenewalRequest {
        server_id: id.into(),
        new_tls_public_key_der: new_key.public_key().to_spki_der(),
        created_at,
        in_use,
    }
    .encode_to_vec();
    pb::SignedRenewalRequest {
        current_key_signature: current.sign(Domain::RenewalRequest, &request).to_vec(),
        new_key_signature: new_signer.sign(Domain::RenewalRequest, &request).to_vec(),
        request,
    }
    .encode_to_vec()
}
