//! The server's own keys and certificate on disk, and enrolment with the central registry
//! (DESIGN §3).
//!
//! `data_dir` layout (secret files 0600):
//! - `tls.key`, `tls.pem`: the TLS key (Ed25519) and the certificate the instance CA issued for it;
//! - `tls-next.key`, `tls-next.pem`: during a renewal, the new key and its certificate, until they
//!   replace the two above (see [`crate::renewal`]);
//! - `signing/<member>/<key-id>.key`: message-signing keys, one directory per member this server
//!   signs for (its owner, and later the members it hosts); `<member>` has `/` replaced by `_`,
//!   which identifiers never contain;
//! - `admin-token`: the bearer token of the admin API;
//! - `enrollment-request.bin`: the signed enrolment request `init` made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use certs::{CaRoots, Clock, Domain, KeyId, SigningKey, SystemClock, TlsIdentity};
use globalconf::{Anchor, InstanceId, MemberId, SecurityServerId};
use prost::Message;
use proto::v1 as pb;
use serde::Deserialize;

use crate::config::{Config, HsmConfig};

/// Why the server's identity could not be made, loaded or enrolled.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Keys(#[from] certs::Error),
    #[error("cannot access {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} already exists: this server was initialised before")]
    AlreadyInitialised(String),
    #[error("this server is not initialised: run `security-server --config PATH init` first")]
    NotInitialised,
    #[error(
        "this server has no certificate yet: run `security-server --config PATH enroll` and have the registry operator approve it"
    )]
    NotEnrolled,
    #[error("no signing key for member {0}")]
    NoSigningKey(String),
    #[error("no registry answered: {0}")]
    RegistryUnreachable(String),
    #[error("the registry refused the enrolment: {0}")]
    Refused(String),
    #[error("the certificate the registry issued is not for this server's TLS key")]
    CertificateMismatch,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where each file of the identity lives.
#[derive(Debug, Clone)]
pub struct Paths {
    data_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
        }
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn tls_key(&self) -> PathBuf {
        self.data_dir.join("tls.key")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.data_dir.join("tls.pem")
    }
    pub fn tls_next_key(&self) -> PathBuf {
        self.data_dir.join("tls-next.key")
    }
    pub fn tls_next_cert(&self) -> PathBuf {
        self.data_dir.join("tls-next.pem")
    }
    pub fn admin_token(&self) -> PathBuf {
        self.data_dir.join("admin-token")
    }
    pub fn enrollment_request(&self) -> PathBuf {
        self.data_dir.join("enrollment-request.bin")
    }
    pub fn stored_globalconf(&self) -> PathBuf {
        self.data_dir.join("globalconf.bin")
    }
    /// Where the configuration of a federated instance is kept.
    pub fn stored_federated_globalconf(&self, instance: &InstanceId) -> PathBuf {
        self.data_dir
            .join("federation")
            .join(format!("{instance}.globalconf.bin"))
    }
    pub fn signing_dir(&self, member: &MemberId) -> PathBuf {
        self.data_dir
            .join("signing")
            .join(member.to_string().replace('/', "_"))
    }
    pub fn signing_key(&self, member: &MemberId, key_id: &KeyId) -> PathBuf {
        self.signing_dir(member).join(format!("{key_id}.key"))
    }
}

/// What `init` made.
#[derive(Debug)]
pub struct InitReport {
    pub server_id: SecurityServerId,
    pub signing_key_id: KeyId,
    pub tls_key_id: KeyId,
    pub enrollment_request: PathBuf,
}

fn create_private_dir(path: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

/// Makes the server's TLS key, its owner's signing key, the admin token, and a signed enrolment
/// request (DESIGN §3). Refuses to run twice.
pub fn init(config: &Config, clock: &dyn Clock) -> Result<InitReport, IdentityError> {
    let server_id = config
        .server_id()
        .map_err(|_| IdentityError::NotInitialised)?
        .clone();
    let paths = Paths::new(&config.data_dir);
    if let Some(made) = [paths.tls_key(), paths.enrollment_request()]
        .into_iter()
        .find(|p| p.exists())
    {
        return Err(IdentityError::AlreadyInitialised(
            made.display().to_string(),
        ));
    }
    create_private_dir(paths.data_dir())?;
    let owner = server_id.owner().clone();
    create_private_dir(&paths.signing_dir(&owner))?;

    // Keys the configuration puts in a hardware security module are found or made there; the
    // others are files.
    let token = config.hsm.as_ref().map(HsmConfig::open).transpose()?;
    let in_token = |label: Option<&str>| -> Result<Option<SigningKey>, IdentityError> {
        match (&token, label) {
            (Some(token), Some(label)) => Ok(Some(token.key_or_generate(label)?.0)),
            _ => Ok(None),
        }
    };
    let hsm = config.hsm.as_ref();
    let signing_key = match in_token(hsm.and_then(|h| h.signing_key_label(&owner)))? {
        Some(key) => key,
        None => {
            let key = SigningKey::generate()?;
            certs::save_secret_key(&paths.signing_key(&owner, &key.key_id()), &key)?;
            key
        }
    };
    let tls_key = match in_token(hsm.and_then(|h| h.tls_key_label.as_deref()))? {
        Some(key) => key,
        None => {
            let key = SigningKey::generate()?;
            certs::save_secret_key(&paths.tls_key(), &key)?;
            key
        }
    };
    let token = random_hex(32)?;
    certs::write_secret_file(&paths.admin_token(), token.as_bytes())?;

    let request = pb::EnrollmentRequest {
        server_id: server_id.to_string(),
        addresses: config.advertised_addresses(),
        tls_public_key_der: tls_key.public_key().to_spki_der(),
        member_signing_public_key: signing_key.public_key().as_bytes().to_vec(),
        created_at: clock.unix_now(),
    }
    .encode_to_vec();
    let signature = signing_key.sign(Domain::EnrollmentRequest, &request);
    let signed = pb::SignedEnrollmentRequest {
        request,
        signature: signature.to_vec(),
        token: String::new(),
    };
    certs::write_file_atomic(&paths.enrollment_request(), &signed.encode_to_vec())?;
    Ok(InitReport {
        server_id,
        signing_key_id: signing_key.key_id(),
        tls_key_id: tls_key.key_id(),
        enrollment_request: paths.enrollment_request(),
    })
}

/// Random bytes as lowercase hex, for tokens.
pub fn random_hex(bytes: usize) -> Result<String, IdentityError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| IdentityError::Io {
        path: "the operating system's random source".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(buf))
}

/// The status the registry reports for an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentStatus {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: EnrollmentStatus,
    #[serde(default)]
    certificate_pem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

pub use runtime::admin::path_segment;

fn registry_client(
    roots: &Arc<CaRoots>,
    clock: Arc<dyn Clock>,
) -> Result<runtime::HttpClient, IdentityError> {
    let tls = roots.client_config(&[b"h2", b"http/1.1"], clock)?;
    Ok(runtime::HttpClient::https(tls))
}

/// The CAs an enrolling server trusts for HTTPS to the registry: its anchor's.
fn anchor_roots(anchor: &Anchor) -> Result<Arc<CaRoots>, IdentityError> {
    Ok(CaRoots::new(&anchor.ca_certificates_der())?)
}

/// Sends the enrolment request (with the one-time token, if the operator issued one) to the
/// first registry that answers.
pub async fn submit_enrollment(
    config: &Config,
    anchor: &Anchor,
    token: Option<&str>,
) -> Result<EnrollmentStatus, IdentityError> {
    let paths = Paths::new(&config.data_dir);
    let path = paths.enrollment_request();
    let bytes = std::fs::read(&path).map_err(|_| IdentityError::NotInitialised)?;
    let mut signed = pb::SignedEnrollmentRequest::decode(bytes.as_slice())
        .map_err(|_| IdentityError::NotInitialised)?;
    signed.token = token.unwrap_or_default().to_owned();
    let status: StatusBody = post_to_registry(
        anchor,
        &anchor_roots(anchor)?,
        "/v1/enrollments",
        signed.encode_to_vec(),
        Arc::new(SystemClock),
    )
    .await?;
    Ok(status.status)
}

/// POSTs a protobuf `body` to `path` at the first registry that answers (replicas answer 503:
/// the next URL is tried) and reads its JSON answer. The registry's certificate is checked at
/// `clock`'s time.
pub(crate) async fn post_to_registry<T: serde::de::DeserializeOwned>(
    anchor: &Anchor,
    roots: &Arc<CaRoots>,
    path: &str,
    body: Vec<u8>,
    clock: Arc<dyn Clock>,
) -> Result<T, IdentityError> {
    let body = Bytes::from(body);
    let client = registry_client(roots, clock)?;
    let mut failures = Vec::new();
    for base in anchor.registry_urls() {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        match client
            .post(&url, None, "application/x-protobuf", body.clone())
            .await
        {
            Ok(r) if r.is_success() => {
                return r
                    .json()
                    .map_err(|e| IdentityError::Refused(format!("unreadable answer: {e}")));
            }
            Ok(r) if r.status.as_u16() == 503 => failures.push(format!("{url}: read-only")),
            Ok(r) => {
                let message = r
                    .json::<ErrorBody>()
                    .map(|e| format!("{}: {}", e.kind, e.message))
                    .unwrap_or_else(|_| format!("HTTP {}", r.status));
                return Err(IdentityError::Refused(message));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(IdentityError::RegistryUnreachable(failures.join("; ")))
}

/// Asks the registry for the enrolment's status; once approved, checks and stores the issued
/// certificate as `tls.pem`.
pub async fn fetch_certificate(
    config: &Config,
    anchor: &Anchor,
) -> Result<EnrollmentStatus, IdentityError> {
    let server_id = config
        .server_id()
        .map_err(|_| IdentityError::NotInitialised)?;
    let paths = Paths::new(&config.data_dir);
    let token = config.hsm.as_ref().map(HsmConfig::open).transpose()?;
    let tls_key = TlsKeys::of(config, token.as_ref()).current()?;
    let client = registry_client(&anchor_roots(anchor)?, Arc::new(SystemClock))?;
    let mut failures = Vec::new();
    for base in anchor.registry_urls() {
        let url = format!(
            "{}/v1/enrollments/{}",
            base.trim_end_matches('/'),
            path_segment(&server_id.to_string())
        );
        let r = match client.get(&url, None).await {
            Ok(r) if r.is_success() => r,
            Ok(r) => {
                failures.push(format!("{url}: HTTP {}", r.status));
                continue;
            }
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let status: StatusBody = r
            .json()
            .map_err(|e| IdentityError::Refused(format!("unreadable answer: {e}")))?;
        if status.status == EnrollmentStatus::Approved {
            let pem = status
                .certificate_pem
                .ok_or_else(|| IdentityError::Refused("approved without a certificate".into()))?;
            if !certifies(&certs::certs_from_pem(&pem)?, &tls_key) {
                return Err(IdentityError::CertificateMismatch);
            }
            certs::write_file_atomic(&paths.tls_cert(), pem.as_bytes())?;
        }
        return Ok(status.status);
    }
    Err(IdentityError::RegistryUnreachable(failures.join("; ")))
}

/// Whether the leaf of `chain` certifies `key`.
pub(crate) fn certifies(chain: &[Vec<u8>], key: &SigningKey) -> bool {
    chain.first().is_some_and(|leaf| {
        certs::certificate_info(leaf).is_ok_and(|i| i.spki_der == key.public_key().to_spki_der())
    })
}

/// The loaded identity a running server needs.
#[derive(Debug)]
pub struct Identity {
    pub server_id: SecurityServerId,
    pub tls: TlsIdentity,
    /// Where the TLS key lives (renewals make the next one there).
    pub tls_keys: TlsKeys,
    /// Every message-signing key (on disk or in the token), by member.
    pub signing_keys: Vec<(MemberId, SigningKey)>,
    /// The hardware security module's token (`[hsm]`), logged in.
    pub token: Option<certs::pkcs11::Token>,
    pub admin_token: String,
}

impl Identity {
    pub fn load(config: &Config) -> Result<Self, IdentityError> {
        let server_id = config
            .server_id()
            .map_err(|_| IdentityError::NotInitialised)?
            .clone();
        let paths = Paths::new(&config.data_dir);
        let token = config.hsm.as_ref().map(HsmConfig::open).transpose()?;
        let tls_keys = TlsKeys::of(config, token.as_ref());
        let tls_key = tls_keys.current()?;
        let cert_path = paths.tls_cert();
        if !cert_path.exists() {
            return Err(IdentityError::NotEnrolled);
        }
        let pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let mut chain = certs::certs_from_pem(&pem)?;
        if !certifies(&chain, &tls_key) {
            // A renewal stopped between moving the new key and its certificate into place.
            let next = paths.tls_next_cert();
            let next_chain = std::fs::read_to_string(&next)
                .ok()
                .and_then(|pem| certs::certs_from_pem(&pem).ok())
                .filter(|c| certifies(c, &tls_key))
                .ok_or(IdentityError::CertificateMismatch)?;
            std::fs::rename(&next, &cert_path).map_err(io_err(&cert_path))?;
            chain = next_chain;
        }
        let admin_token = String::from_utf8_lossy(&certs::read_secret_file(&paths.admin_token())?)
            .trim()
            .to_owned();
        let mut signing_keys = Vec::new();
        let signing_root = paths.data_dir().join("signing");
        let dirs = std::fs::read_dir(&signing_root).map_err(io_err(&signing_root))?;
        for dir in dirs {
            let dir = dir.map_err(io_err(&signing_root))?.path();
            let Some(member) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.replace('_', "/").parse::<MemberId>().ok())
            else {
                continue;
            };
            for file in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let file = file.map_err(io_err(&dir))?.path();
                if file.extension().is_some_and(|e| e == "key") {
                    signing_keys.push((member.clone(), certs::load_secret_key(&file)?));
                }
            }
        }
        if let (Some(token), Some(hsm)) = (&token, &config.hsm) {
            for key in &hsm.signing_keys {
                let found = token.keys_under(&key.key_label)?;
                if found.is_empty() {
                    return Err(certs::Error::Module(format!(
                        "no key labelled {:?} (or {:?}/…) in token {:?}",
                        key.key_label,
                        key.key_label,
                        token.label()
                    ))
                    .into());
                }
                signing_keys.extend(found.into_iter().map(|(_, k)| (key.member.clone(), k)));
            }
        }
        if !signing_keys.iter().any(|(m, _)| m == server_id.owner()) {
            return Err(IdentityError::NoSigningKey(server_id.owner().to_string()));
        }
        Ok(Self {
            server_id,
            tls: TlsIdentity::new(chain, tls_key),
            tls_keys,
            signing_keys,
            token,
            admin_token,
        })
    }
}

/// Where the server's TLS key lives, and where a renewal makes the key that takes over: files
/// (`tls.key`, `tls-next.key`) or a token (`LABEL`, `LABEL.next`).
#[derive(Debug, Clone)]
pub enum TlsKeys {
    Files(Paths),
    Module {
        token: certs::pkcs11::Token,
        label: String,
    },
}

impl TlsKeys {
    /// Where `config` keeps the TLS key; `token` is the configured one, open.
    pub fn of(config: &Config, token: Option<&certs::pkcs11::Token>) -> Self {
        let label = config.hsm.as_ref().and_then(|h| h.tls_key_label.clone());
        match (token, label) {
            (Some(token), Some(label)) => TlsKeys::Module {
                token: token.clone(),
                label,
            },
            _ => TlsKeys::Files(Paths::new(&config.data_dir)),
        }
    }

    fn next_label(label: &str) -> String {
        format!("{label}.next")
    }

    /// The key in use. For a token, a renewal stopped between its relabelling steps is finished.
    pub fn current(&self) -> Result<SigningKey, IdentityError> {
        match self {
            TlsKeys::Files(paths) => {
                if !paths.tls_key().exists() {
                    return Err(IdentityError::NotInitialised);
                }
                Ok(certs::load_secret_key(&paths.tls_key())?)
            }
            TlsKeys::Module { token, label } => {
                if let Some(key) = token.find(label)? {
                    return Ok(key);
                }
                let next = Self::next_label(label);
                if token.find(&next)?.is_some() {
                    token.relabel(&next, label)?;
                }
                Ok(token.key(label)?)
            }
        }
    }

    /// The key a renewal made, if one is waiting.
    pub fn next(&self) -> Result<Option<SigningKey>, IdentityError> {
        match self {
            TlsKeys::Files(paths) => {
                let path = paths.tls_next_key();
                Ok(path
                    .exists()
                    .then(|| certs::load_secret_key(&path))
                    .transpose()?)
            }
            TlsKeys::Module { token, label } => Ok(token.find(&Self::next_label(label))?),
        }
    }

    /// Makes the key a renewal asks a certificate for.
    pub fn make_next(&self) -> Result<SigningKey, IdentityError> {
        match self {
            TlsKeys::Files(paths) => {
                let key = SigningKey::generate()?;
                certs::save_secret_key(&paths.tls_next_key(), &key)?;
                Ok(key)
            }
            TlsKeys::Module { token, label } => Ok(token.generate(&Self::next_label(label))?),
        }
    }

    /// Puts the waiting key in the place of the one in use (which is gone afterwards).
    pub fn install_next(&self) -> Result<(), IdentityError> {
        match self {
            TlsKeys::Files(paths) => std::fs::rename(paths.tls_next_key(), paths.tls_key())
                .map_err(io_err(&paths.tls_key())),
            TlsKeys::Module { token, label } => {
                // Destroyed first: a token refuses two keys with one label, and until the
                // relabelling the next key is found by `current` (which finishes the job).
                token.destroy(label)?;
                token.relabel(&Self::next_label(label), label)?;
                Ok(())
            }
        }
    }
}
