//! `central-registry`: the thin binary. It reads the configuration, then either initialises a
//! data directory, serves (until SIGINT/SIGTERM), runs a replica, or calls the admin API of the
//! running registry (which holds the database): each admin command names one operation of
//! `central_registry::ops` (`dispatch`), which is sent and printed the same way for all.
//!
//! One file, because the command line is one tree of commands, read together with `dispatch`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use central_registry::{
    AdminClient, AdminOp, Registry, RegistryConfig, Replica, ReplicaConfig, config, init_data_dir,
    issue_replica_identity, ops,
};
use certs::{KeyId, PublicKey, SystemClock};
use clap::{Parser, Subcommand};
use globalconf::{GlobalGroupId, InstanceId, MemberId, SecurityServerId, SubsystemId};
use http::StatusCode;

#[derive(Debug, Parser)]
#[command(
    name = "central-registry",
    version,
    about = "The central registry of an xroad-rs instance"
)]
struct Cli {
    /// The registry's configuration file.
    #[arg(
        long,
        global = true,
        env = "XROAD_REGISTRY_CONFIG",
        default_value = "central-registry.toml"
    )]
    config: PathBuf,
    /// Print JSON instead of text (admin commands), or log JSON (serve, replica).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the configuration file (if missing) and the data directory: keys, CA, TLS
    /// certificate, admin token, database and anchor.
    Init {
        #[arg(long)]
        instance: String,
        /// Public registry URL (primary first, then replicas); repeat for several.
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Where keys, the CA, the database and the anchor go (written into a new
        /// configuration file; default `registry-data` beside it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Issue a TLS key and certificate for a replica host (writes tls.pem, tls.key, anchor.toml).
    IssueReplicaIdentity {
        #[arg(long)]
        host: String,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Serve the public HTTPS endpoints and the admin API until SIGINT/SIGTERM.
    Serve,
    /// Run a read-only replica that polls an upstream registry and serves what verifies.
    Replica {
        #[arg(long)]
        anchor: PathBuf,
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<String>,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        tls_cert: PathBuf,
        #[arg(long)]
        tls_key: PathBuf,
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, default_value_t = 60)]
        poll_interval_secs: u64,
    },
    /// Members (organisations).
    #[command(subcommand)]
    Member(MemberCmd),
    /// Subsystems of members.
    #[command(subcommand)]
    Subsystem(SubsystemCmd),
    /// Global groups of subsystems.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Enrolment requests of security servers.
    #[command(subcommand)]
    Enrollment(EnrollmentCmd),
    /// One-time enrolment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Approved security servers.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Member signing keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// The configuration-signing key: show it, or roll it over without a new anchor.
    #[command(subcommand)]
    SigningKey(SigningKeyCmd),
    /// The instance CA: show it, roll it over, withdraw the previous one (docs/keys.md).
    #[command(subcommand)]
    Ca(CaCmd),
    /// Federation with other instances: their anchors, as agreed by both operators
    /// (docs/federation.md).
    #[command(subcommand)]
    Federation(FederationCmd),
    /// Sign and publish a new configuration serial now.
    Publish,
    /// Serial and validity of the served configuration, and counts.
    Status,
    /// Recent admin and enrolment actions.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write an encrypted backup of the running registry: keys, CAs, configuration and database
    /// (docs/backup.md).
    Backup(runtime::backup::BackupArgs),
    /// Make a key pair for backups: the secret key goes to a new file (0600), kept offline; the
    /// public key to give `backup --recipient` is printed.
    BackupKey(runtime::backup::KeyArgs),
    /// Restore a backup into a new configuration file (--config) and an empty data directory,
    /// with no registry running on it.
    Restore(runtime::backup::RestoreArgs),
    #[command(flatten)]
    Generated(runtime::cli::Generated),
}

#[derive(Debug, Subcommand)]
enum MemberCmd {
    Add {
        id: MemberId,
        #[arg(long)]
        name: String,
    },
    List,
    /// Sets what residents read about the member: its name per language and where to ask
    /// about its use of their data. Replaces the earlier profile.
    Profile {
        id: MemberId,
        /// `LANG=NAME`, e.g. `ja=千代田区` (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// `https://…` or `mailto:…`.
        #[arg(long)]
        privacy_contact: Option<String>,
    },
    /// Removes the member with its subsystems, keys and servers.
    Remove {
        id: MemberId,
    },
}

#[derive(Debug, Subcommand)]
enum SubsystemCmd {
    Add {
        id: SubsystemId,
        #[arg(long, default_value = "")]
        name: String,
    },
    List,
    /// Sets the subsystem's name per language, as residents read it. Replaces the earlier names.
    Profile {
        id: SubsystemId,
        /// `LANG=NAME`, e.g. `ja=福祉事務所` (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    Remove {
        id: SubsystemId,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    Add {
        id: GlobalGroupId,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Remove {
        id: GlobalGroupId,
    },
    AddMember {
        group: GlobalGroupId,
        subsystem: SubsystemId,
    },
    RemoveMember {
        group: GlobalGroupId,
        subsystem: SubsystemId,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollmentCmd {
    List,
    Show { server_id: SecurityServerId },
    Approve { server_id: SecurityServerId },
    Reject { server_id: SecurityServerId },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Prints a one-time token to hand to that server's operator.
    Issue { server_id: SecurityServerId },
}

#[derive(Debug, Subcommand)]
enum ServerCmd {
    List,
    Remove {
        id: SecurityServerId,
    },
    AddSubsystem {
        server: SecurityServerId,
        subsystem: SubsystemId,
    },
    RemoveSubsystem {
        server: SecurityServerId,
        subsystem: SubsystemId,
    },
}

#[derive(Debug, Subcommand)]
enum SigningKeyCmd {
    /// The key that signs configurations now and how many rollovers since the anchor.
    Show,
    /// Make a new signing key, announce it signed by the current one, and sign with it from now
    /// on; servers follow by themselves (docs/keys.md).
    Rotate,
}

#[derive(Debug, Subcommand)]
enum FederationCmd {
    /// Federate with the instance of ANCHOR (the anchor file its operator handed over), or
    /// replace the anchor held for it. Prints the fingerprint to compare.
    Add { anchor: PathBuf },
    /// End the federation with INSTANCE at the next configuration.
    Remove { instance: InstanceId },
    /// The federated instances and their anchors' fingerprints.
    List,
    /// The fingerprint of ANCHOR, or of this registry's own anchor: what the other operator
    /// compares with the one `federation add` printed.
    Fingerprint { anchor: Option<PathBuf> },
}

#[derive(Debug, Subcommand)]
enum CaCmd {
    /// The issuing CA, the previous one during a rollover, and the servers it waits for.
    Show,
    /// Make a successor CA, cross-signed by the current one, and publish it beside it; servers
    /// renew their certificates under it by themselves.
    Rotate,
    /// End the rollover: stop publishing the previous CA (refused while a server depends on it).
    Withdraw,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    List {
        member: MemberId,
    },
    Add {
        member: MemberId,
        /// Base64 of the raw 32-byte Ed25519 public key.
        #[arg(long)]
        public_key: String,
        /// Unix seconds; default now.
        #[arg(long)]
        valid_from: Option<i64>,
    },
    Retire {
        member: MemberId,
        key_id: String,
        /// Unix seconds; default now.
        #[arg(long)]
        at: Option<i64>,
    },
    Remove {
        member: MemberId,
        key_id: String,
    },
    /// Keys security servers asked to list (`security-server keys rotate`), waiting for approval.
    Requests,
    /// List a requested key; it becomes valid `key_activation_delay_secs` later.
    Approve {
        member: MemberId,
        key_id: String,
    },
    /// Drop a key request.
    Reject {
        member: MemberId,
        key_id: String,
    },
}

fn main() -> ExitCode {
    runtime::cli::finish(main_with(Cli::parse()))
}

fn main_with(cli: Cli) -> Result<()> {
    if let Command::Generated(generated) = cli.command {
        return Ok(generated.run(<Cli as clap::CommandFactory>::command())?);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init {
            instance,
            urls,
            data_dir,
        } => init(&cli.config, &instance, urls, data_dir),
        Command::IssueReplicaIdentity { host, out_dir } => {
            let config = load(&cli.config)?;
            let files = issue_replica_identity(&config, &host, &out_dir, &SystemClock)?;
            println!("replica certificate: {}", files.tls_cert.display());
            println!("replica key (0600):  {}", files.tls_key.display());
            println!("anchor copy:         {}", files.anchor.display());
            Ok(())
        }
        Command::Serve => {
            let config = load(&cli.config)?;
            runtime::init_tracing(json || config.log_format == "json");
            let registry = Registry::open(config, Arc::new(SystemClock))?;
            registry.serve(runtime::signal()).await?;
            Ok(())
        }
        Command::Replica {
            anchor,
            upstreams,
            listen,
            tls_cert,
            tls_key,
            state_dir,
            poll_interval_secs,
        } => {
            runtime::init_tracing(json);
            let replica = Replica::new(
                ReplicaConfig {
                    anchor,
                    upstreams,
                    tls_cert,
                    tls_key,
                    state_dir,
                    poll_interval: Duration::from_secs(poll_interval_secs.max(1)),
                },
                Arc::new(SystemClock),
            )?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            replica.run(listener, runtime::signal()).await?;
            Ok(())
        }
        Command::BackupKey(args) => Ok(args.run()?),
        Command::Federation(FederationCmd::Fingerprint { anchor }) => {
            let path = match anchor {
                Some(path) => path,
                None => {
                    central_registry::datadir::DataDir::new(load(&cli.config)?.data_dir).anchor()
                }
            };
            let anchor = globalconf::Anchor::load(&path)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "instance": anchor.instance(),
                        "fingerprint": anchor.fingerprint()?,
                    })
                );
            } else {
                println!("instance {}", anchor.instance());
                println!("anchor fingerprint: {}", anchor.fingerprint()?);
            }
            Ok(())
        }
        Command::Restore(args) => {
            let report = central_registry::backup::restore(
                &cli.config,
                &args.file,
                &args.identity,
                args.data_dir,
            )?;
            runtime::backup::print_restored(
                &report.manifest,
                report.files,
                &report.config,
                &report.data_dir,
            );
            println!(
                "next: central-registry --config {} serve",
                report.config.display()
            );
            Ok(())
        }
        command => admin_command(&cli.config, json, command).await,
    }
}

fn load(path: &Path) -> Result<RegistryConfig> {
    RegistryConfig::load(path).map_err(|e| match e {
        // Says the file already.
        config::ConfigError::Io { .. } => e.into(),
        e => anyhow::Error::from(e).context(path.display().to_string()),
    })
}

fn init(path: &Path, instance: &str, urls: Vec<String>, data_dir: Option<PathBuf>) -> Result<()> {
    // Relative to where the command runs, not to the configuration file.
    let data_dir = data_dir
        .map(|d| std::path::absolute(&d).with_context(|| format!("--data-dir {}", d.display())))
        .transpose()?;
    let config = if path.exists() {
        let config = load(path)?;
        if let Some(dir) = data_dir.filter(|d| *d != config.data_dir) {
            bail!(
                "{} exists with data_dir {}, not {}",
                path.display(),
                config.data_dir.display(),
                dir.display()
            );
        }
        if config.instance != instance {
            bail!(
                "{} is for instance {}, not {instance}",
                path.display(),
                config.instance
            );
        }
        if !urls.is_empty() && urls != config.public_urls {
            bail!(
                "{} already lists public_urls {:?}; edit the file instead of passing --url",
                path.display(),
                config.public_urls
            );
        }
        config
    } else {
        let mut config = RegistryConfig {
            instance: instance.to_owned(),
            ..RegistryConfig::default()
        };
        if let Some(dir) = data_dir {
            config.data_dir = dir;
        }
        if let Some(first) = urls.first() {
            config.public_urls = urls.clone();
            let port = config::url_port(first).map_err(anyhow::Error::msg)?;
            let host = config::url_host(first).map_err(anyhow::Error::msg)?;
            // An IP literal is listened on as is; a host name on all interfaces.
            let ip = host
                .parse()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            config.listen = std::net::SocketAddr::new(ip, port);
        }
        config.validate()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = format!(
            "# central-registry configuration; every key is described in docs/registry.md\n{}",
            config.to_toml()?
        );
        certs::write_file_atomic(path, text.as_bytes())?;
        println!("wrote configuration {}", path.display());
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config
    };
    let summary = init_data_dir(&config, &SystemClock)?;
    println!("initialised {}", summary.data_dir.display());
    println!(
        "anchor (hand this to security server operators): {}",
        summary.anchor_path.display()
    );
    println!("configuration-signing key id: {}", summary.signing_key_id);
    println!("admin token (0600): {}", summary.admin_token_path.display());
    println!(
        "start with: central-registry --config {} serve",
        path.display()
    );
    Ok(())
}

async fn admin_command(path: &Path, json: bool, command: Command) -> Result<()> {
    let config = load(path)?;
    let client = AdminClient::from_config(&config)
        .context("cannot read the admin token (run this on the registry host)")?;
    dispatch(
        command,
        Call {
            client: &client,
            json,
        },
    )?
    .await
}

/// What to do with the operation a command names: [`Call`] sends it, the tests record it.
trait WithOp {
    type Output;
    fn with<Op: AdminOp>(self, op: Op) -> Self::Output;
}

/// Maps an admin command to its operation and request (see `central_registry::ops`).
fn dispatch<W: WithOp>(command: Command, w: W) -> Result<W::Output> {
    Ok(match command {
        Command::Status => w.with(ops::Status),
        Command::Publish => w.with(ops::Publish),
        Command::SigningKey(SigningKeyCmd::Show) => w.with(ops::ShowSigningKey),
        Command::SigningKey(SigningKeyCmd::Rotate) => w.with(ops::RotateSigningKey),
        Command::Ca(CaCmd::Show) => w.with(ops::ShowCa),
        Command::Ca(CaCmd::Rotate) => w.with(ops::RotateCa),
        Command::Ca(CaCmd::Withdraw) => w.with(ops::WithdrawCa),
        Command::Audit { limit } => w.with(ops::Audit { limit: Some(limit) }),
        Command::Backup(runtime::backup::BackupArgs { recipient, out }) => {
            w.with(ops::CreateBackup {
                recipient,
                // The registry writes the file: a path relative to where the command runs means
                // nothing to it.
                out: std::path::absolute(&out).with_context(|| out.display().to_string())?,
            })
        }
        Command::Member(cmd) => match cmd {
            MemberCmd::Add { id, name } => w.with(ops::AddMember { id, name }),
            MemberCmd::List => w.with(ops::ListMembers),
            MemberCmd::Profile {
                id,
                names,
                privacy_contact,
            } => w.with(ops::SetMemberProfile {
                id,
                profile: ops::Profile {
                    names: language_names(names)?,
                    privacy_contact,
                },
            }),
            MemberCmd::Remove { id } => w.with(ops::RemoveMember { id }),
        },
        Command::Subsystem(cmd) => match cmd {
            SubsystemCmd::Add { id, name } => w.with(ops::AddSubsystem { id, name }),
            SubsystemCmd::List => w.with(ops::ListSubsystems),
            SubsystemCmd::Profile { id, names } => w.with(ops::SetSubsystemProfile {
                id,
                profile: ops::SubsystemProfile {
                    names: language_names(names)?,
                },
            }),
            SubsystemCmd::Remove { id } => w.with(ops::RemoveSubsystem { id }),
        },
        Command::Group(cmd) => match cmd {
            GroupCmd::Add { id, description } => w.with(ops::AddGroup { id, description }),
            GroupCmd::List => w.with(ops::ListGroups),
            GroupCmd::Remove { id } => w.with(ops::RemoveGroup { id }),
            GroupCmd::AddMember { group, subsystem } => {
                w.with(ops::AddGroupMember { group, subsystem })
            }
            GroupCmd::RemoveMember { group, subsystem } => {
                w.with(ops::RemoveGroupMember { group, subsystem })
            }
        },
        Command::Enrollment(cmd) => match cmd {
            EnrollmentCmd::List => w.with(ops::ListEnrollments),
            EnrollmentCmd::Show { server_id } => w.with(ops::GetEnrollment { server_id }),
            EnrollmentCmd::Approve { server_id } => w.with(ops::ApproveEnrollment { server_id }),
            EnrollmentCmd::Reject { server_id } => w.with(ops::RejectEnrollment { server_id }),
        },
        Command::Token(TokenCmd::Issue { server_id }) => w.with(ops::IssueToken { server_id }),
        Command::Server(cmd) => match cmd {
            ServerCmd::List => w.with(ops::ListServers),
            ServerCmd::Remove { id } => w.with(ops::RemoveServer { id }),
            ServerCmd::AddSubsystem { server, subsystem } => {
                w.with(ops::AddHostedSubsystem { server, subsystem })
            }
            ServerCmd::RemoveSubsystem { server, subsystem } => {
                w.with(ops::RemoveHostedSubsystem { server, subsystem })
            }
        },
        Command::Federation(cmd) => match cmd {
            FederationCmd::Add { anchor } => {
                // The registry checks the anchor; the file is only read here.
                let text = std::fs::read_to_string(&anchor)
                    .with_context(|| format!("cannot read {}", anchor.display()))?;
                w.with(ops::AddFederation { anchor: text })
            }
            FederationCmd::Remove { instance } => w.with(ops::RemoveFederation { instance }),
            FederationCmd::List => w.with(ops::ListFederations),
            FederationCmd::Fingerprint { .. } => bail!("not an admin command"),
        },
        Command::Key(cmd) => match cmd {
            KeyCmd::List { member } => w.with(ops::ListKeys { member }),
            KeyCmd::Add {
                member,
                public_key,
                valid_from,
            } => {
                let public_key = PublicKey::from_base64(public_key.trim())?;
                let key = ops::NewKey {
                    public_key,
                    valid_from,
                };
                w.with(ops::AddKey { member, key })
            }
            KeyCmd::Retire { member, key_id, at } => w.with(ops::RetireKey {
                member,
                key_id: KeyId::parse(&key_id)?,
                retirement: ops::Retirement { at },
            }),
            KeyCmd::Remove { member, key_id } => w.with(ops::RemoveKey {
                member,
                key_id: KeyId::parse(&key_id)?,
            }),
            KeyCmd::Requests => w.with(ops::ListKeyRequests),
            KeyCmd::Approve { member, key_id } => w.with(ops::ApproveKeyRequest {
                member,
                key_id: KeyId::parse(&key_id)?,
            }),
            KeyCmd::Reject { member, key_id } => w.with(ops::RejectKeyRequest {
                member,
                key_id: KeyId::parse(&key_id)?,
            }),
        },
        Command::Init { .. }
        | Command::IssueReplicaIdentity { .. }
        | Command::Serve
        | Command::Replica { .. }
        | Command::BackupKey(_)
        | Command::Restore(_)
        | Command::Generated(_) => bail!("not an admin command"),
    })
}

/// Sends the operation and prints its answer: JSON with `--json` (except a `204 No Content`
/// answer, which has none), else the operation's text.
struct Call<'a> {
    client: &'a AdminClient,
    json: bool,
}

impl<'a> WithOp for Call<'a> {
    type Output = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

    fn with<Op: AdminOp>(self, op: Op) -> Self::Output {
        Box::pin(async move {
            let answer = self.client.call(&op).await?;
            if self.json && Op::STATUS != StatusCode::NO_CONTENT {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", op.text(&answer));
                if let Some(notice) = op.notice(&answer) {
                    eprintln!("{notice}");
                }
            }
            Ok(())
        })
    }
}

/// `--name LANG=NAME` arguments as a map.
fn language_names(
    names: Vec<String>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut by_lang = std::collections::BTreeMap::new();
    for n in names {
        let (lang, name) = n
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--name {n:?} is not LANG=NAME"))?;
        by_lang.insert(lang.to_owned(), name.to_owned());
    }
    Ok(by_lang)
}

#[cfg(test)]
#[path = "main/tests.rs"]
mod tests;
