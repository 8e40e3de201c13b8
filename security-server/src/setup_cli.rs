//! `security-server init` and `enroll`: this server's keys, its configuration file and its
//! enrolment with the registry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use globalconf::{Anchor, SecurityServerId};
use security_server::Config;
use security_server::identity::{self, EnrollmentStatus, Paths};

/// The addresses `init` writes into a new configuration file.
pub struct Listen<'a> {
    pub client_proxy: &'a str,
    pub server_proxy: &'a str,
    pub advertise: Vec<String>,
    pub admin: &'a str,
}

pub fn init(
    config_path: &Path,
    id: SecurityServerId,
    anchor_path: &Path,
    listen: Listen<'_>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let anchor = Anchor::load(anchor_path).context("reading the anchor")?;
    // Relative to where the command runs, not to the configuration file.
    let data_dir = data_dir
        .map(|d| std::path::absolute(&d).with_context(|| format!("--data-dir {}", d.display())))
        .transpose()?;
    if !config_path.exists() {
        let mut config = Config {
            server_id: Some(id.clone()),
            ..Config::default()
        };
        config.client_proxy.listen = listen.client_proxy.parse().context("--client-proxy")?;
        config.server_proxy.listen = listen.server_proxy.parse().context("--server-proxy")?;
        config.server_proxy.advertise = listen.advertise;
        config.admin.listen = listen.admin.parse().context("--admin")?;
        if let Some(dir) = &data_dir {
            // The anchor and archives are kept with the rest of the server's state: the
            // packaged service may write nowhere else.
            config.anchor = dir.join("anchor.toml");
            config.messagelog.archive_dir = dir.join("archive");
            config.data_dir.clone_from(dir);
        }
        if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        certs::write_file_atomic(config_path, config.to_toml()?.as_bytes())?;
        println!("wrote {}", config_path.display());
    }
    let config = Config::load(config_path)?;
    if let Some(dir) = data_dir.filter(|d| *d != config.data_dir) {
        bail!(
            "{} exists with data_dir {}, not {}",
            config_path.display(),
            config.data_dir.display(),
            dir.display()
        );
    }
    if config.server_id()? != &id {
        bail!(
            "{} is configured for {}, not {id}",
            config_path.display(),
            config.server_id()?
        );
    }
    if anchor.instance().as_str() != id.owner().instance() {
        bail!(
            "the anchor is for instance {}, the server id for {}",
            anchor.instance(),
            id.owner().instance()
        );
    }
    anchor
        .save(&config.anchor)
        .context("importing the anchor")?;
    let report = identity::init(&config, &certs::SystemClock)?;
    println!("initialised {}", report.server_id);
    println!(
        "  anchor imported:        {} (instance {})",
        config.anchor.display(),
        anchor.instance()
    );
    println!("  member signing key id:  {}", report.signing_key_id);
    println!("  TLS key id:             {}", report.tls_key_id);
    println!(
        "  enrolment request:      {}",
        report.enrollment_request.display()
    );
    println!(
        "next: security-server --config {} enroll [--token TOKEN]",
        config_path.display()
    );
    Ok(())
}

/// `anchor show`: what an operator compares with the registry operator's fingerprints.
pub fn show_anchor(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let anchor = Anchor::load(&config.anchor).context("reading the anchor")?;
    println!("anchor:     {}", config.anchor.display());
    println!("instance:   {}", anchor.instance());
    for url in anchor.registry_urls() {
        println!("registry:   {url}");
    }
    for key in anchor.signing_keys() {
        println!("anchor key: {}", key.key_id());
    }
    let stored = Paths::new(&config.data_dir).stored_globalconf();
    match std::fs::read(&stored) {
        Ok(bytes) => {
            let held = globalconf::signed::verify(&bytes, &anchor)
                .context("the stored configuration does not verify under the anchor")?;
            println!(
                "signing now (after {} rollover(s), configuration serial {}):",
                held.key_generation(),
                held.serial()
            );
            for key in held.signing_keys() {
                println!("  key:      {}", key.key_id());
            }
        }
        Err(_) => println!("no configuration held yet"),
    }
    Ok(())
}

pub async fn enroll(config_path: &Path, token: Option<&str>, wait: u64) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let anchor = Anchor::load(&config.anchor)?;
    let status = identity::submit_enrollment(&config, &anchor, token).await?;
    println!("enrolment request sent: {status:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        match identity::fetch_certificate(&config, &anchor).await? {
            EnrollmentStatus::Approved => {
                println!(
                    "approved; certificate stored in {}",
                    Paths::new(&config.data_dir).tls_cert().display()
                );
                println!(
                    "next: security-server --config {} run",
                    config_path.display()
                );
                return Ok(());
            }
            EnrollmentStatus::Rejected => bail!("the registry operator rejected the enrolment"),
            EnrollmentStatus::Pending if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            EnrollmentStatus::Pending => {
                println!(
                    "pending: ask the registry operator to run `central-registry enrollment approve {}`, then run enroll again",
                    config.server_id()?
                );
                return Ok(());
            }
        }
    }
}

/// `declared check`: the file checked whole, and what it would change on the running server
/// (read through the admin API), printed without applying anything.
pub async fn check_declared(config_path: &Path, file: Option<PathBuf>) -> anyhow::Result<()> {
    use security_server::admin::{AdminClient, ops};
    use security_server::serverconf::LocalConf;

    let config = Config::load(config_path)?;
    let file = match file {
        Some(file) => file,
        None => config
            .declared
            .as_ref()
            .map(|d| d.file.clone())
            .context("no --file, and the configuration has no [declared] file")?,
    };
    let loaded = security_server::declared::load(&file)?;
    let client = AdminClient::from_config(&config)?;
    let services = client.call(&ops::ListServices).await?;
    let running = LocalConf {
        services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
        access: exchange::access::AccessRights::new(client.call(&ops::ListAccess).await?),
        suppressions: client.call(&ops::ListSuppressions).await?,
        client_auth: client.call(&ops::ListClientAuth).await?,
    };
    let changes = security_server::declared::diff(&running, &loaded.conf, &serde_json::Value::Null);
    println!(
        "{} holds (sha256 {})",
        file.display(),
        hex::encode(loaded.sha256)
    );
    if changes.is_empty() {
        println!("no changes: the running server has exactly this configuration");
    }
    for (action, details) in changes {
        println!("  {action} {details}");
    }
    Ok(())
}
