//! The registry's data directory: which file is which, and `init`, which creates the instance's
//! keys, CA, TLS identity, admin token, database and anchor exactly once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certs::{CertificateAuthority, Clock, KeyId, PublicKey, SigningKey, TlsIdentity};
use globalconf::{Anchor, InstanceId};

use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::store::Store;
use crate::util;

/// Validity of the instance CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Validity of TLS certificates the CA issues (registry, replicas, security servers).
pub const TLS_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// The registry renews its own TLS certificate when it has less than this left (seconds).
pub const RENEW_BEFORE_SECS: i64 = 30 * 24 * 3600;

/// The files of a registry data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Ed25519 key that signs the global configuration (0600).
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("configuration-signing.key")
    }
    /// A new configuration-signing key during a rollover, until it replaces the one above.
    pub fn next_signing_key(&self) -> PathBuf {
        self.root.join("configuration-signing-next.key")
    }
    /// A configuration-signing key after a rollover retired it (kept, never used again).
    pub fn retired_signing_key(&self, key_id: &KeyId) -> PathBuf {
        self.root
            .join(format!("configuration-signing-{key_id}.retired.key"))
    }
    /// The instance CA that issues certificates: its certificate and key (0600).
    pub fn ca_pem(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    /// During a CA rollover, the CA the one above took over from (certificate only: its key is
    /// deleted when the rollover starts).
    pub fn previous_ca_pem(&self) -> PathBuf {
        self.root.join("ca-previous.pem")
    }
    /// During a CA rollover, the issuing CA's certificate signed by the previous CA.
    pub fn cross_ca_pem(&self) -> PathBuf {
        self.root.join("ca-cross.pem")
    }
    /// A new CA while a rollover writes it, until it replaces `ca.pem` and `ca.key`.
    pub fn next_ca_pem(&self) -> PathBuf {
        self.root.join("ca-next.pem")
    }
    pub fn next_ca_key(&self) -> PathBuf {
        self.root.join("ca-next.key")
    }
    /// A withdrawn CA's certificate, kept for whoever checks old certificates.
    pub fn withdrawn_ca_pem(&self, cert_der: &[u8]) -> PathBuf {
        let sha = hex::encode(certs::cert_sha256(cert_der));
        self.root.join(format!("ca-{}.withdrawn.pem", &sha[..16]))
    }
    pub fn tls_pem(&self) -> PathBuf {
        self.root.join("tls.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.root.join("tls.key")
    }
    /// Bearer token of the admin API (0600, hex).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("registry.redb")
    }
    pub fn anchor(&self) -> PathBuf {
        self.root.join("anchor.toml")
    }

    fn all(&self) -> [PathBuf; 8] {
        [
            self.signing_key(),
            self.ca_pem(),
            self.ca_key(),
            self.tls_pem(),
            self.tls_key(),
            self.admin_token(),
            self.database(),
            self.anchor(),
        ]
    }

    /// Reads the admin bearer token.
    pub fn read_admin_token(&self) -> Result<String, RegistryError> {
        let bytes = certs::read_secret_file(&self.admin_token())?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| RegistryError::Internal("admin-token is not text".into()))?;
        Ok(text.trim().to_owned())
    }
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitSummary {
    pub data_dir: PathBuf,
    pub anchor_path: PathBuf,
    pub admin_token_path: PathBuf,
    pub signing_key_id: KeyId,
}

/// Creates the data directory's keys, CA, TLS identity, admin token, database and anchor.
/// Refuses a directory that already holds any of them.
pub fn init_data_dir(
    config: &RegistryConfig,
    clock: &dyn Clock,
) -> Result<InitSummary, RegistryError> {
    config.validate()?;
    let instance = config.instance_id()?;
    let dir = DataDir::new(&config.data_dir);
    if let Some(existing) = dir.all().iter().find(|p| p.exists()) {
        return Err(RegistryError::Conflict(format!(
            "{} is already initialised ({} exists); refusing to overwrite it",
            dir.root().display(),
            existing.display()
        )));
    }
    create_private_dir(dir.root())?;

    let signing_key = SigningKey::generate()?;
    certs::save_secret_key(&dir.signing_key(), &signing_key)?;

    let ca = CertificateAuthority::generate(instance.as_str(), CA_VALIDITY, clock)?;
    ca.save(&dir.ca_pem(), &dir.ca_key())?;

    let tls_key = SigningKey::generate()?;
    let tls_cert = ca.issue(
        &format!("xroad-rs {instance} central registry"),
        &tls_key.public_key().to_spki_der(),
        &config.public_hosts()?,
        TLS_VALIDITY,
        clock,
    )?;
    certs::save_secret_key(&dir.tls_key(), &tls_key)?;
    certs::write_file_atomic(&dir.tls_pem(), certs::cert_to_pem(&tls_cert).as_bytes())?;

    let token = util::random_hex(32).map_err(certs::Error::from)?;
    certs::write_secret_file(&dir.admin_token(), format!("{token}\n").as_bytes())?;

    drop(Store::create(&dir.database())?);

    let anchor = Anchor::new(
        instance,
        config.public_urls.clone(),
        ca.certificate_pem(),
        vec![signing_key.public_key()],
    )?;
    anchor.save(&dir.anchor())?;

    Ok(InitSummary {
        data_dir: dir.root().to_owned(),
        anchor_path: dir.anchor(),
        admin_token_path: dir.admin_token(),
        signing_key_id: signing_key.key_id(),
    })
}

/// The configuration-signing key to use: `configuration-signing.key` when it is in `current` (the
/// newest key set), else a rollover stopped after its commit and before moving the files, which
/// is finished here.
pub fn signing_key_for(dir: &DataDir, current: &[PublicKey]) -> Result<SigningKey, RegistryError> {
    let key = certs::load_secret_key(&dir.signing_key())?;
    if current.contains(&key.public_key()) {
        return Ok(key);
    }
    let next_path = dir.next_signing_key();
    let next = next_path
        .exists()
        .then(|| certs::load_secret_key(&next_path))
        .transpose()?
        .filter(|k| current.contains(&k.public_key()))
        .ok_or_else(|| {
            RegistryError::Internal(
                "the configuration-signing key is not in the newest key set the anchor leads to"
                    .into(),
            )
        })?;
    finish_rollover(dir, &key)?;
    Ok(next)
}

/// Moves the retired signing key aside and the next one into its place.
pub(crate) fn finish_rollover(dir: &DataDir, retired: &SigningKey) -> Result<(), RegistryError> {
    let io = |path: PathBuf| {
        move |source| certs::Error::Io {
            path: path.clone(),
            source,
        }
    };
    let retired_path = dir.retired_signing_key(&retired.key_id());
    std::fs::rename(dir.signing_key(), &retired_path).map_err(io(retired_path.clone()))?;
    std::fs::rename(dir.next_signing_key(), dir.signing_key()).map_err(io(dir.signing_key()))?;
    std::fs::File::open(dir.root())
        .and_then(|d| d.sync_all())
        .map_err(io(dir.root().to_owned()))?;
    Ok(())
}

/// The instance CAs: the one that issues, and during a rollover the one it took over from.
#[derive(Debug)]
pub struct InstanceCas {
    pub issuing: CertificateAuthority,
    pub previous: Option<PreviousCa>,
}

/// The CA a rollover took over from, published until it is withdrawn.
#[derive(Debug, Clone)]
pub struct PreviousCa {
    pub cert_der: Vec<u8>,
    /// The issuing CA's certificate signed by this one: sent after the registry's own
    /// certificate, so that clients which still trust only this CA accept it.
    pub cross_der: Vec<u8>,
}

impl InstanceCas {
    /// The certificates to publish, the issuing CA's first.
    pub fn published(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.issuing.certificate_der().to_vec())
            .chain(self.previous.iter().map(|p| p.cert_der.clone()))
            .collect()
    }

    /// The same, as PEM (the anchor's `ca_certificates`, `/v1/ca.pem`).
    pub fn published_pem(&self) -> String {
        self.published()
            .iter()
            .map(|der| certs::cert_to_pem(der))
            .collect()
    }
}

/// Finishes or undoes a CA rollover or withdrawal that stopped half-way (see [`rotate_ca`] and
/// [`withdraw_ca`] for the order of their steps). Only the registry calls this, when it opens
/// its data directory: nothing else may move these files.
pub fn recover_cas(dir: &DataDir) -> Result<(), RegistryError> {
    let (next_key, next_pem) = (dir.next_ca_key(), dir.next_ca_pem());
    if dir.previous_ca_pem().exists() {
        // Committed: move the new CA into place if that did not happen.
        if next_key.exists() {
            rename(&next_key, &dir.ca_key())?;
        }
        if next_pem.exists() {
            rename(&next_pem, &dir.ca_pem())?;
        }
    } else {
        // Not committed, or withdrawn: what a rollover left besides `ca.*` goes.
        for path in [next_key, next_pem, dir.cross_ca_pem()] {
            remove_if_exists(&path)?;
        }
    }
    sync_dir(dir)
}

/// Loads the instance CAs.
pub fn load_cas(dir: &DataDir) -> Result<InstanceCas, RegistryError> {
    let issuing = CertificateAuthority::load(&dir.ca_pem(), &dir.ca_key())?;
    let previous = if dir.previous_ca_pem().exists() {
        Some(PreviousCa {
            cert_der: read_one_cert(&dir.previous_ca_pem())?,
            cross_der: read_one_cert(&dir.cross_ca_pem())?,
        })
    } else {
        None
    };
    Ok(InstanceCas { issuing, previous })
}

/// Starts a CA rollover: a successor of the issuing CA, cross-signed by it, becomes the issuing
/// CA; the old one's certificate stays published as the previous CA and its key file is deleted
/// (the new key takes its place).
/// Steps: write `ca-next.key`, `ca-next.pem`, `ca-cross.pem`; move `ca.pem` to `ca-previous.pem`
/// (the commit); move the new key and certificate into `ca.key` and `ca.pem`.
pub fn rotate_ca(
    dir: &DataDir,
    instance: &InstanceId,
    cas: &InstanceCas,
    clock: &dyn Clock,
) -> Result<InstanceCas, RegistryError> {
    if cas.previous.is_some() {
        return Err(RegistryError::Conflict(
            "a CA rollover is under way: withdraw the previous CA before starting another".into(),
        ));
    }
    let (next, cross) = cas
        .issuing
        .successor(instance.as_str(), CA_VALIDITY, clock)?;
    for path in [dir.next_ca_key(), dir.next_ca_pem()] {
        remove_if_exists(&path)?;
    }
    next.save(&dir.next_ca_pem(), &dir.next_ca_key())?;
    certs::write_file_atomic(&dir.cross_ca_pem(), certs::cert_to_pem(&cross).as_bytes())?;
    sync_dir(dir)?;
    rename(&dir.ca_pem(), &dir.previous_ca_pem())?;
    rename(&dir.next_ca_key(), &dir.ca_key())?;
    rename(&dir.next_ca_pem(), &dir.ca_pem())?;
    sync_dir(dir)?;
    Ok(InstanceCas {
        issuing: next,
        previous: Some(PreviousCa {
            cert_der: cas.issuing.certificate_der().to_vec(),
            cross_der: cross,
        }),
    })
}

/// Ends a CA rollover: the previous CA's certificate moves to `ca-<sha>.withdrawn.pem` (no longer
/// published), then the cross-certificate is removed.
pub fn withdraw_ca(dir: &DataDir, previous: &PreviousCa) -> Result<(), RegistryError> {
    rename(
        &dir.previous_ca_pem(),
        &dir.withdrawn_ca_pem(&previous.cert_der),
    )?;
    remove_if_exists(&dir.cross_ca_pem())?;
    sync_dir(dir)
}

/// The registry's own certificate chain as it should be: the leaf renewed, for the same key,
/// when less than [`RENEW_BEFORE_SECS`] of it is left at the clock's time or when the issuing CA
/// did not issue it; followed, during a CA rollover, by the cross-certificate. Stored as
/// `tls.pem` when it changed; `None` when it did not.
pub fn renew_own_certificate(
    dir: &DataDir,
    instance: &InstanceId,
    cas: &InstanceCas,
    hosts: &[String],
    current: &TlsIdentity,
    clock: &dyn Clock,
) -> Result<Option<TlsIdentity>, RegistryError> {
    let leaf = current
        .cert_chain
        .first()
        .ok_or_else(|| RegistryError::Internal("the registry's tls.pem is empty".into()))?;
    let info = certs::certificate_info(leaf)?;
    let due = info.not_after.saturating_sub(clock.unix_now()) <= RENEW_BEFORE_SECS;
    let key = current.key().clone();
    let leaf = if due || !cas.issuing.issued(leaf) {
        cas.issuing.issue(
            &format!("xroad-rs {instance} central registry"),
            &key.public_key().to_spki_der(),
            hosts,
            TLS_VALIDITY,
            clock,
        )?
    } else {
        leaf.clone()
    };
    let chain: Vec<Vec<u8>> = std::iter::once(leaf)
        .chain(cas.previous.iter().map(|p| p.cross_der.clone()))
        .collect();
    if chain == current.cert_chain {
        return Ok(None);
    }
    let pem: String = chain.iter().map(|der| certs::cert_to_pem(der)).collect();
    certs::write_file_atomic(&dir.tls_pem(), pem.as_bytes())?;
    tracing::info!(
        expired_at = info.not_after,
        chain_len = chain.len(),
        "the registry's TLS certificate was renewed"
    );
    Ok(Some(TlsIdentity::new(chain, key)))
}

fn read_one_cert(path: &Path) -> Result<Vec<u8>, RegistryError> {
    let pem = std::fs::read_to_string(path).map_err(|source| certs::Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut ders = certs::certs_from_pem(&pem)?;
    if ders.len() != 1 {
        return Err(RegistryError::Internal(format!(
            "{} should hold one certificate, it holds {}",
            path.display(),
            ders.len()
        )));
    }
    Ok(ders.remove(0))
}

fn rename(from: &Path, to: &Path) -> Result<(), RegistryError> {
    std::fs::rename(from, to).map_err(|source| {
        certs::Error::Io {
            path: to.to_owned(),
            source,
        }
        .into()
    })
}

fn remove_if_exists(path: &Path) -> Result<(), RegistryError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(certs::Error::Io {
            path: path.to_owned(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &DataDir) -> Result<(), RegistryError> {
    std::fs::File::open(dir.root())
        .and_then(|d| d.sync_all())
        .map_err(|source| {
            certs::Error::Io {
                path: dir.root().to_owned(),
                source,
            }
            .into()
        })
}

/// A TLS identity for a registry replica on `host`, issued by the instance CA: writes
/// `out_dir/tls.pem`, `out_dir/tls.key` (0600) and a copy of the anchor, `out_dir/anchor.toml`.
pub fn issue_replica_identity(
    config: &RegistryConfig,
    host: &str,
    out_dir: &Path,
    clock: &dyn Clock,
) -> Result<ReplicaIdentityFiles, RegistryError> {
    let dir = DataDir::new(&config.data_dir);
    if host.is_empty() {
        return Err(RegistryError::BadRequest("host is empty".into()));
    }
    let cas = load_cas(&dir)?;
    let anchor = Anchor::load(&dir.anchor())?;
    create_private_dir(out_dir)?;
    let files = ReplicaIdentityFiles {
        tls_cert: out_dir.join("tls.pem"),
        tls_key: out_dir.join("tls.key"),
        anchor: out_dir.join("anchor.toml"),
    };
    if files.tls_key.exists() {
        return Err(RegistryError::Conflict(format!(
            "{} exists; refusing to overwrite it",
            files.tls_key.display()
        )));
    }
    let key = SigningKey::generate()?;
    let cert = cas.issuing.issue(
        &format!("xroad-rs {} registry replica {host}", anchor.instance()),
        &key.public_key().to_spki_der(),
        &[host.to_owned()],
        TLS_VALIDITY,
        clock,
    )?;
    // During a CA rollover the cross-certificate follows, as for the registry's own.
    let chain: String = std::iter::once(&cert)
        .chain(cas.previous.iter().map(|p| &p.cross_der))
        .map(|der| certs::cert_to_pem(der))
        .collect();
    certs::save_secret_key(&files.tls_key, &key)?;
    certs::write_file_atomic(&files.tls_cert, chain.as_bytes())?;
    anchor.save(&files.anchor)?;
    Ok(files)
}

/// The files [`issue_replica_identity`] wrote.
#[derive(Debug, Clone)]
pub struct ReplicaIdentityFiles {
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub anchor: PathBuf,
}

/// Creates a directory (and parents); a directory we create is 0700, as it holds secrets.
fn create_private_dir(path: &Path) -> Result<(), RegistryError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| {
            RegistryError::Certs(certs::Error::Io {
                path: path.to_owned(),
                source,
            })
        })
}
