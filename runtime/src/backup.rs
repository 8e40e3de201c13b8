//! The backup file of a security server or a registry, written while it runs and restored into
//! an empty directory.
//!
//! A backup is a tar archive encrypted for one recipient in the [age](https://age-encryption.org)
//! format: an X25519 public key (`age1…`) encrypts, only its secret key (`AGE-SECRET-KEY-1…`, a
//! file kept offline) decrypts, and any change or truncation of the file fails the decryption.
//! `age -d -i KEY FILE | tar t` lists a backup without this software.
//!
//! The archive's first entry is `manifest.json` ([`Manifest`]); the others are files under a
//! few top-level names the binary chooses (`config/`, `data/`, `archive/`). A restore maps each
//! name to a path and writes files 0600 in directories 0700, never over an existing file; it
//! refuses names that are absolute, hold `..`, or are not regular files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr as _;

use redb::{Key, ReadTransaction, ReadableTable as _, TableDefinition, Value, WriteTransaction};
use serde::{Deserialize, Serialize};

/// `backup`'s arguments, the same in every binary that has the command.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The age public key (`age1…`, from `backup-key`) whose secret key alone can read it.
    #[arg(long)]
    pub recipient: String,
    /// The new file, which the running server itself writes: for the packaged service, under
    /// its data directory's `backups/`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `backup-key`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// The new secret key file (0600).
    #[arg(long)]
    pub out: PathBuf,
}

impl KeyArgs {
    /// Makes the key pair and says where it went and what to back up to.
    pub fn run(&self) -> Result<(), BackupError> {
        let recipient = generate_key(&self.out)?;
        println!("secret key (keep it offline): {}", self.out.display());
        println!("public key, for `backup --recipient`: {recipient}");
        Ok(())
    }
}

/// `restore`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The secret key file (from `backup-key`, or `age-keygen`).
    #[arg(long)]
    pub identity: PathBuf,
    /// Put the data here instead of where the backed-up server kept it (with a security
    /// server's anchor and archives).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// What every restore prints: whose backup, how many files, where they went.
pub fn print_restored(manifest: &Manifest, files: usize, config: &Path, data_dir: &Path) {
    println!(
        "restored the backup of {} begun {}",
        manifest.id, manifest.created_at
    );
    println!("  files:          {files}");
    println!("  configuration:  {}", config.display());
    println!("  data directory: {}", data_dir.display());
}

/// A backup's staging directory in a data directory, where its database copies wait to go into
/// the archive (deleted when dropped). Never backed up itself: see [`is_staging`].
pub fn staging_dir(data_dir: &Path) -> Result<tempfile::TempDir, BackupError> {
    tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(data_dir)
        .map_err(BackupError::io(data_dir))
}

/// Whether `relative` (to the data directory) is a staging directory or in one: this backup's,
/// or one a stopped backup left behind.
pub fn is_staging(relative: &Path) -> bool {
    relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .is_some_and(|name| name.starts_with(STAGING_PREFIX))
}

const STAGING_PREFIX: &str = ".backup-";

/// The format of [`Manifest`] and the archive this code writes and reads.
pub const FORMAT: u32 = 1;

/// What went wrong with a backup or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A recipient or secret key that is not an age X25519 key.
    #[error("{0}")]
    Key(String),
    /// The file does not decrypt with the key: another key, or a changed or truncated file.
    #[error(
        "the backup does not decrypt with this key (another key, or a changed or cut file): {0}"
    )]
    Decrypt(String),
    /// The archive is not a backup this code can restore.
    #[error("not a backup this version can restore: {0}")]
    Format(String),
    /// The database copy failed.
    #[error("copying the database: {0}")]
    Database(String),
    /// A restore that would not start from nothing: a backup of another kind of server, an
    /// existing configuration file, a directory that is not empty.
    #[error("{0}")]
    Refused(String),
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `manifest.json`: what the backup is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `security-server` or `central-registry`.
    pub kind: String,
    /// The server's identifier, or the registry's instance.
    pub id: String,
    /// When the backup began (RFC 3339, UTC).
    pub created_at: String,
    /// The version of the software that wrote it.
    pub version: String,
    /// Message log records the copied database held (security servers); the records
    /// acknowledged while the backup was written may follow them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_records: Option<u64>,
    /// Where the backed-up server kept what the archive's top-level names hold (`data`,
    /// `archive`, ...): a restore puts them back there unless told otherwise.
    #[serde(default)]
    pub paths: std::collections::BTreeMap<String, PathBuf>,
}

/// Writes a backup file: [`BackupWriter::create`], files, then [`BackupWriter::finish`]. A writer
/// dropped before `finish` deletes its file.
pub struct BackupWriter {
    tar: Option<tar::Builder<age::stream::StreamWriter<File>>>,
    path: PathBuf,
}

impl std::fmt::Debug for BackupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl BackupWriter {
    /// Creates `out` (mode 0600; never over an existing file), encrypted for `recipient`
    /// (`age1…`), and writes the manifest first.
    pub fn create(
        out: &Path,
        recipient: &str,
        manifest: &Manifest,
    ) -> Result<BackupWriter, BackupError> {
        let recipient = age::x25519::Recipient::from_str(recipient.trim()).map_err(|e| {
            BackupError::Key(format!(
                "{recipient:?} is not an age recipient (age1…): {e}"
            ))
        })?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(BackupError::io(out))?;
        let mut writer = BackupWriter {
            tar: None,
            path: out.to_path_buf(),
        };
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| BackupError::Key(e.to_string()))?;
        let stream = encryptor.wrap_output(file).map_err(BackupError::io(out))?;
        let mut tar = tar::Builder::new(stream);
        tar.mode(tar::HeaderMode::Deterministic);
        writer.tar = Some(tar);
        let json =
            serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Format(e.to_string()))?;
        writer.add_reader("manifest.json", json.as_slice(), json.len() as u64)?;
        Ok(writer)
    }

    fn tar(&mut self) -> &mut tar::Builder<age::stream::StreamWriter<File>> {
        self.tar
            .as_mut()
            .unwrap_or_else(|| unreachable!("the archive is open until finish"))
    }

    /// Adds `len` bytes of `reader` as the file `name`.
    pub fn add_reader(
        &mut self,
        name: &str,
        reader: impl Read,
        len: u64,
    ) -> Result<(), BackupError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        let path = self.path.clone();
        self.tar()
            .append_data(&mut header, name, reader.take(len))
            .map_err(BackupError::io(&path))
    }

    /// Adds the file at `path` as `name`, as it is now.
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<(), BackupError> {
        let file = File::open(path).map_err(BackupError::io(path))?;
        let len = file.metadata().map_err(BackupError::io(path))?.len();
        self.add_reader(name, file, len)
    }

    /// Adds every regular file under `dir` as `prefix/<relative path>`, except those `skip`
    /// names (relative paths); returns how many. A missing `dir` adds nothing.
    pub fn add_dir(
        &mut self,
        prefix: &str,
        dir: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> Result<u64, BackupError> {
        if !dir.exists() {
            return Ok(0);
        }
        let mut added = 0;
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let mut entries = fs::read_dir(&current)
                .map_err(BackupError::io(&current))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(BackupError::io(&current))?;
            entries.sort_by_key(fs::DirEntry::file_name);
            for entry in entries {
                let path = entry.path();
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                if skip(&relative) {
                    continue;
                }
                let kind = entry.file_type().map_err(BackupError::io(&path))?;
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() {
                    let name = format!("{prefix}/{}", relative.display());
                    self.add_file(&name, &path)?;
                    added += 1;
                }
            }
        }
        Ok(added)
    }

    /// Ends the archive and the encryption, and makes the file durable; returns its size.
    pub fn finish(mut self) -> Result<u64, BackupError> {
        let path = self.path.clone();
        let tar = self
            .tar
            .take()
            .unwrap_or_else(|| unreachable!("the archive is open until finish"));
        let stream = tar.into_inner().map_err(BackupError::io(&path))?;
        let file = stream.finish().map_err(BackupError::io(&path))?;
        file.sync_all().map_err(BackupError::io(&path))?;
        let len = file.metadata().map_err(BackupError::io(&path))?.len();
        self.path = PathBuf::new();
        Ok(len)
    }
}

impl Drop for BackupWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes a new age key pair for backups: writes the secret key to `out` (mode 0600, never over
/// an existing file) and returns the public recipient (`age1…`) to back up to.
pub fn generate_key(out: &Path) -> Result<String, BackupError> {
    use age::secrecy::ExposeSecret as _;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(BackupError::io(out))?;
    let text = format!(
        "# xroad-rs backup key; public key (recipient): {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(BackupError::io(out))?;
    Ok(recipient)
}

/// Decrypts `backup` with the secret key in `identity_file` (as [`generate_key`] or
/// `age-keygen` write it) and reads its manifest only.
pub fn read_manifest(backup: &Path, identity_file: &Path) -> Result<Manifest, BackupError> {
    let mut archive = decrypt(backup, identity_file)?;
    let mut entries = archive.entries().map_err(BackupError::io(backup))?;
    manifest(backup, &mut entries)
}

/// Decrypts `backup` with the secret key in `identity_file` and writes every file after the
/// manifest where `place` maps its name (`None`: refused, the restore fails). Files are created
/// 0600 (never over an existing one) in directories 0700. Returns the manifest and the paths
/// written, in archive order. Check the manifest with [`read_manifest`] first: a restore that
/// fails half-way leaves what it wrote.
pub fn restore(
    backup: &Path,
    identity_file: &Path,
    place: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Result<(Manifest, Vec<PathBuf>), BackupError> {
    let mut archive = decrypt(backup, identity_file)?;
    let mut entries = archive.entries().map_err(BackupError::io(backup))?;
    let manifest = manifest(backup, &mut entries)?;
    let mut written = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| BackupError::Decrypt(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| BackupError::Format(e.to_string()))?
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular
            || !name.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(BackupError::Format(format!(
                "{} is not a plain relative file name",
                name.display()
            )));
        }
        let target = place(&name).ok_or_else(|| {
            BackupError::Format(format!("{} has no place in a restore", name.display()))
        })?;
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(BackupError::io(parent))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(BackupError::io(&target))?;
        io::copy(&mut entry, &mut file).map_err(|e| BackupError::Decrypt(e.to_string()))?;
        file.sync_all().map_err(BackupError::io(&target))?;
        written.push(target);
    }
    Ok((manifest, written))
}

/// Where a restore puts a backup, checked before anything is written ([`plan_restore`]).
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub manifest: Manifest,
    /// The new configuration file.
    pub config: PathBuf,
    /// The data directory: the backed-up one, or the one the operator named.
    pub data_dir: PathBuf,
    /// Whether the data directory is not the backed-up one (then what the server kept beside
    /// it goes into it too).
    pub moved: bool,
}

impl RestorePlan {
    /// Where the backed-up server kept `name` (`Manifest::paths`).
    pub fn backed_up(&self, name: &str) -> Result<PathBuf, BackupError> {
        self.manifest.paths.get(name).cloned().ok_or_else(|| {
            BackupError::Format(format!("the manifest does not say where `{name}` was"))
        })
    }
}

/// Reads the manifest of `backup` and checks that it is of `kind` and can be restored with its
/// configuration written to `config` (which must not exist) and its data in `data_dir` (default:
/// where the backed-up server kept it), which must be empty or absent.
pub fn plan_restore(
    backup: &Path,
    identity_file: &Path,
    kind: &str,
    config: &Path,
    data_dir: Option<PathBuf>,
) -> Result<RestorePlan, BackupError> {
    let manifest = read_manifest(backup, identity_file)?;
    if manifest.kind != kind {
        return Err(BackupError::Refused(format!(
            "{} is a backup of a {}, not of a {kind}",
            backup.display(),
            manifest.kind
        )));
    }
    if config.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists: a restore writes a new configuration file",
            config.display()
        )));
    }
    let moved = data_dir.is_some();
    let mut plan = RestorePlan {
        manifest,
        config: config.to_path_buf(),
        data_dir: PathBuf::new(),
        moved,
    };
    plan.data_dir = match data_dir {
        Some(dir) => std::path::absolute(&dir).map_err(BackupError::io(&dir))?,
        None => plan.backed_up("data")?,
    };
    require_empty(&plan.data_dir)?;
    Ok(plan)
}

/// Refuses a directory that exists and holds anything.
pub fn require_empty(dir: &Path) -> Result<(), BackupError> {
    if fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::Refused(format!(
            "{} is not empty: a restore needs an empty directory",
            dir.display()
        )));
    }
    Ok(())
}

type Decrypted = tar::Archive<age::stream::StreamReader<BufReader<File>>>;

fn decrypt(backup: &Path, identity_file: &Path) -> Result<Decrypted, BackupError> {
    let identities = age::IdentityFile::from_file(identity_file.display().to_string())
        .map_err(BackupError::io(identity_file))?
        .into_identities()
        .map_err(|e| {
            BackupError::Key(format!(
                "{} holds no age secret key: {e}",
                identity_file.display()
            ))
        })?;
    let file = File::open(backup).map_err(BackupError::io(backup))?;
    let decryptor = age::Decryptor::new(BufReader::new(file))
        .map_err(|e| BackupError::Decrypt(e.to_string()))?;
    let stream = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| BackupError::Decrypt(e.to_string()))?;
    Ok(tar::Archive::new(stream))
}

/// The first entry, `manifest.json`, of a format this code reads.
fn manifest(
    backup: &Path,
    entries: &mut tar::Entries<'_, age::stream::StreamReader<BufReader<File>>>,
) -> Result<Manifest, BackupError> {
    let mut first = entries
        .next()
        .ok_or_else(|| BackupError::Format("the archive is empty".into()))?
        .map_err(|e| BackupError::Decrypt(e.to_string()))?;
    if first.path_bytes().as_ref() != b"manifest.json" {
        return Err(BackupError::Format(
            "the archive does not begin with manifest.json".into(),
        ));
    }
    let mut json = Vec::new();
    (&mut first)
        .take(1 << 20)
        .read_to_end(&mut json)
        .map_err(BackupError::io(backup))?;
    let manifest = serde_json::from_slice::<Manifest>(&json)
        .map_err(|e| BackupError::Format(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Format(format!(
            "format {} (this version reads {FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Copies one table of a database, as the read transaction `from` sees it, into `to` (the
/// consistent copy of a running database: its file cannot be copied while it is written). A
/// table the source lacks is skipped.
pub fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), BackupError> {
    let db = |e: &dyn std::fmt::Display| BackupError::Database(e.to_string());
    let source = match from.open_table(table) {
        Ok(source) => source,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db(&e)),
    };
    let mut target = to.open_table(table).map_err(|e| db(&e))?;
    for row in source.iter().map_err(|e| db(&e))? {
        let (key, value) = row.map_err(|e| db(&e))?;
        target
            .insert(key.value(), value.value())
            .map_err(|e| db(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
