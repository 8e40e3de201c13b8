//! `central-registry`: the thin binary. It reads the configuration, then either initialises a
//! data directory, serves (until SIGINT/SIGTERM), runs a replica, or calls the admin API of the
//! running registry (which holds the database).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use central_registry::{
    AdminClient, EnrollmentView, KeyView, MemberView, Registry, RegistryConfig, Replica,
    ReplicaConfig, ServerView, StatusView, config, init_data_dir, issue_replica_identity,
};
use certs::{KeyId, PublicKey, SystemClock};
use clap::{Parser, Subcommand};
use globalconf::{GlobalGroupId, MemberId, SecurityServerId, SubsystemId};
use serde::Serialize;

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
    /// Sign and publish a new configuration serial now.
    Publish,
    /// Serial and validity of the served configuration, and counts.
    Status,
    /// Recent admin and enrolment actions.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCmd {
    Add {
        id: MemberId,
        #[arg(long)]
        name: String,
    },
    List,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init { instance, urls } => init(&cli.config, &instance, urls),
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
        command => admin_command(&cli.config, json, command).await,
    }
}

fn load(path: &Path) -> Result<RegistryConfig> {
    RegistryConfig::load(path).with_context(|| format!("configuration {}", path.display()))
}

fn init(path: &Path, instance: &str, urls: Vec<String>) -> Result<()> {
    let config = if path.exists() {
        let config = load(path)?;
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

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        text(value);
    }
    Ok(())
}

fn print_status(s: &StatusView) {
    println!("instance:            {}", s.instance);
    println!("serial:              {}", s.serial);
    println!("generated at:        {}", s.generated_at);
    println!("expires at:          {}", s.expires_at);
    println!("members:             {}", s.members);
    println!("subsystems:          {}", s.subsystems);
    println!("security servers:    {}", s.servers);
    println!("pending enrolments:  {}", s.pending_enrollments);
}

fn print_member(m: &MemberView) {
    println!("{}  {:?}", m.id, m.name);
    for s in &m.subsystems {
        println!("  subsystem {}  {:?}", s.id, s.name);
    }
    for k in &m.signing_keys {
        print_key(k);
    }
    for s in &m.servers {
        println!("  server    {s}");
    }
}

fn print_key(k: &KeyView) {
    let until = k
        .valid_until
        .map_or_else(|| "until removed".to_owned(), |u| format!("until {u}"));
    println!(
        "  key       {}  from {} {until}  {}",
        k.key_id,
        k.valid_from,
        k.public_key.to_base64()
    );
}

fn print_server(s: &ServerView) {
    println!("{}  {}", s.id, s.addresses.join(", "));
    println!("  tls sha256 {}", s.tls_cert_sha256);
    for h in &s.hosted_subsystems {
        println!("  hosts     {h}");
    }
}

fn print_enrollment(e: &EnrollmentView) {
    println!(
        "{}  {}  {}  member key {}  submitted {}",
        e.server_id,
        e.status.as_str(),
        e.addresses.join(", "),
        e.member_key_id,
        e.submitted_at
    );
}

async fn admin_command(path: &Path, json: bool, command: Command) -> Result<()> {
    let config = load(path)?;
    let client = AdminClient::from_config(&config)
        .context("cannot read the admin token (run this on the registry host)")?;
    match command {
        Command::Status => print(json, &client.status().await?, print_status),
        Command::Publish => print(json, &client.publish().await?, print_status),
        Command::Audit { limit } => print(json, &client.audit(limit).await?, |entries| {
            for e in entries {
                println!("{:>6}  {}  {:<24} {}", e.seq, e.time, e.action, e.details);
            }
        }),
        Command::Member(cmd) => match cmd {
            MemberCmd::Add { id, name } => {
                print(json, &client.add_member(&id, &name).await?, print_member)
            }
            MemberCmd::List => print(json, &client.list_members().await?, |ms| {
                ms.iter().for_each(print_member)
            }),
            MemberCmd::Remove { id } => {
                client.remove_member(&id).await?;
                println!("removed member {id}");
                Ok(())
            }
        },
        Command::Subsystem(cmd) => match cmd {
            SubsystemCmd::Add { id, name } => {
                print(json, &client.add_subsystem(&id, &name).await?, |s| {
                    println!("added subsystem {}  {:?}", s.id, s.name)
                })
            }
            SubsystemCmd::List => print(json, &client.list_subsystems().await?, |ss| {
                for s in ss {
                    println!("{}  {:?}", s.id, s.name);
                }
            }),
            SubsystemCmd::Remove { id } => {
                client.remove_subsystem(&id).await?;
                println!("removed subsystem {id}");
                Ok(())
            }
        },
        Command::Group(cmd) => {
            let show = |g: &central_registry::GroupView| {
                println!("{}  {:?}", g.id, g.description);
                for m in &g.members {
                    println!("  member {m}");
                }
            };
            match cmd {
                GroupCmd::Add { id, description } => {
                    print(json, &client.add_group(&id, &description).await?, show)
                }
                GroupCmd::List => print(json, &client.list_groups().await?, |gs| {
                    gs.iter().for_each(show)
                }),
                GroupCmd::Remove { id } => {
                    client.remove_group(&id).await?;
                    println!("removed group {id}");
                    Ok(())
                }
                GroupCmd::AddMember { group, subsystem } => print(
                    json,
                    &client.add_group_member(&group, &subsystem).await?,
                    show,
                ),
                GroupCmd::RemoveMember { group, subsystem } => print(
                    json,
                    &client.remove_group_member(&group, &subsystem).await?,
                    show,
                ),
            }
        }
        Command::Enrollment(cmd) => match cmd {
            EnrollmentCmd::List => print(json, &client.list_enrollments().await?, |es| {
                es.iter().for_each(print_enrollment)
            }),
            EnrollmentCmd::Show { server_id } => {
                print(json, &client.enrollment(&server_id).await?, |e| {
                    print_enrollment(e);
                    if let Some(pem) = &e.certificate_pem {
                        print!("{pem}");
                    }
                })
            }
            EnrollmentCmd::Approve { server_id } => print(
                json,
                &client.approve_enrollment(&server_id).await?,
                print_enrollment,
            ),
            EnrollmentCmd::Reject { server_id } => print(
                json,
                &client.reject_enrollment(&server_id).await?,
                print_enrollment,
            ),
        },
        Command::Token(TokenCmd::Issue { server_id }) => {
            print(json, &client.issue_token(&server_id).await?, |t| {
                println!("{}", t.token);
                eprintln!(
                    "one-time enrolment token for {}, valid until {}; hand it to that server's operator",
                    t.server_id, t.expires_at
                );
            })
        }
        Command::Server(cmd) => match cmd {
            ServerCmd::List => print(json, &client.list_servers().await?, |ss| {
                ss.iter().for_each(print_server)
            }),
            ServerCmd::Remove { id } => {
                client.remove_server(&id).await?;
                println!("removed security server {id}");
                Ok(())
            }
            ServerCmd::AddSubsystem { server, subsystem } => print(
                json,
                &client.add_hosted_subsystem(&server, &subsystem).await?,
                print_server,
            ),
            ServerCmd::RemoveSubsystem { server, subsystem } => print(
                json,
                &client.remove_hosted_subsystem(&server, &subsystem).await?,
                print_server,
            ),
        },
        Command::Key(cmd) => match cmd {
            KeyCmd::List { member } => print(json, &client.list_keys(&member).await?, |ks| {
                ks.iter().for_each(print_key)
            }),
            KeyCmd::Add {
                member,
                public_key,
                valid_from,
            } => {
                let key = PublicKey::from_base64(public_key.trim())?;
                print(
                    json,
                    &client.add_key(&member, &key, valid_from).await?,
                    print_key,
                )
            }
            KeyCmd::Retire { member, key_id, at } => {
                let key_id = KeyId::parse(&key_id)?;
                print(
                    json,
                    &client.retire_key(&member, &key_id, at).await?,
                    print_key,
                )
            }
            KeyCmd::Remove { member, key_id } => {
                let key_id = KeyId::parse(&key_id)?;
                client.remove_key(&member, &key_id).await?;
                println!("removed key {key_id} of {member}");
                Ok(())
            }
        },
        Command::Init { .. }
        | Command::IssueReplicaIdentity { .. }
        | Command::Serve
        | Command::Replica { .. } => bail!("not an admin command"),
    }
}
