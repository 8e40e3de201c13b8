//! The `security-server` binary: reads the configuration, then either prepares the server
//! (`init`, `enroll`), runs it (`run`) until SIGINT/SIGTERM, or talks to a running one's admin API.
//! Each admin command names one operation of `security_server::admin::ops` (`dispatch`), which
//! is sent and printed the same way for all.
//!
//! One file, because the command line is one tree of commands, read together with its tests.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use exchange::access::{Grant, Subject};
use globalconf::{ClientId, MemberId, SecurityServerId, ServiceId};
use security_server::Config;
use security_server::admin::{AdminClient, AdminOp, Reply as _, ops};
use security_server::client_auth::{ClientAuth, Connection};
use security_server::config::LogFormat;
use security_server::serverconf::ServiceEntry;
use security_server::usage::{SuppressedClient, Suppression};

#[derive(Debug, Parser)]
#[command(name = "security-server", version, about = "xroad-rs security server")]
struct Cli {
    /// The server's configuration file.
    #[arg(
        long,
        global = true,
        env = "XROAD_SS_CONFIG",
        default_value = "security-server.toml"
    )]
    config: PathBuf,
    /// Print the admin API's JSON answer instead of text (service, access, audit).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import the anchor, make this server's keys and a signed enrolment request; writes the
    /// configuration file if it does not exist.
    Init {
        /// This server's identifier, INSTANCE/CLASS/MEMBER/SERVERCODE.
        #[arg(long)]
        id: SecurityServerId,
        /// The instance anchor file, obtained from the registry operator out of band.
        #[arg(long)]
        anchor: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        client_proxy: String,
        #[arg(long, default_value = "0.0.0.0:5500")]
        server_proxy: String,
        /// host:port peers use to reach the server proxy (repeatable).
        #[arg(long)]
        advertise: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:8090")]
        admin: String,
        /// Where keys, certificates, the stored configuration and the message log go
        /// (written into a new configuration file; default `data` beside it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Send the enrolment request to the registry and fetch the certificate once approved.
    Enroll {
        /// One-time enrolment token from the registry operator (approves at once).
        #[arg(long, env = "XROAD_ENROLLMENT_TOKEN")]
        token: Option<String>,
        /// Keep asking for up to this many seconds until the operator approves.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Run the server until SIGINT or SIGTERM.
    Run,
    /// Show the running server's status (admin API).
    Status,
    /// Ask the running server to refresh its global configuration now (admin API).
    RefreshGlobalconf,
    /// Ask the registry for a renewed TLS certificate now; the running server presents it once
    /// the configuration lists it (admin API; it also renews by itself before expiry).
    Renew,
    /// Member signing keys this server holds; rotation (admin API).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Services this server provides for its hosted subsystems (admin API).
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Access rights to the services: deny by default (admin API).
    #[command(subcommand)]
    Access(AccessCmd),
    /// Resident transparency: hide or delay, in `findUsage`, the accesses of an organisation
    /// (e.g. an investigating body); every change is in the audit log (admin API).
    #[command(subcommand)]
    Suppression(SuppressionCmd),
    /// How each hosted subsystem's information systems must connect to the client proxy:
    /// plain HTTP, HTTPS, or HTTPS with a registered client certificate (admin API).
    #[command(subcommand)]
    ClientAuth(ClientAuthCmd),
    /// Recent changes of services, access rights, suppression and client rules (admin API).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Evidence for auditors: export a bundle, or verify one offline (docs/evidence.md).
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Maintenance of the message log.
    #[command(subcommand)]
    Messagelog(MessagelogCmd),
    /// The instance anchor this server trusts.
    #[command(subcommand)]
    Anchor(AnchorCmd),
    /// Operational data of the exchanges that began in a time range: client, service, sizes,
    /// duration, outcome (admin API; docs/monitoring.md).
    Operational {
        /// Start (Unix seconds or YYYY-MM-DDTHH:MM:SSZ).
        #[arg(long)]
        from: String,
        /// End (exclusive); default now.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The configuration a cluster's nodes load from one file (`[declared]`; docs/clusters.md).
    #[command(subcommand)]
    Declared(DeclaredCmd),
    /// Write an encrypted backup of the running server: keys, configuration, services, access
    /// rights and the whole message log (admin API; docs/backup.md).
    Backup(runtime::backup::BackupArgs),
    /// Make a key pair for backups: the secret key goes to a new file (0600), kept offline; the
    /// public key to give `backup --recipient` is printed.
    BackupKey(runtime::backup::KeyArgs),
    /// Restore a backup into a new configuration file (--config) and an empty data directory,
    /// with no server running on it.
    Restore(runtime::backup::RestoreArgs),
    #[command(flatten)]
    Generated(runtime::cli::Generated),
}

#[derive(Debug, Subcommand)]
enum DeclaredCmd {
    /// Check a declared file (default: `declared.file` of the configuration) and print what it
    /// would change on the running server, without applying it; exits 1 if it does not hold.
    Check {
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AnchorCmd {
    /// The anchor's instance, registries and key fingerprints, and the keys that sign the
    /// configuration now (after rollovers), to compare with what the registry operator publishes.
    Show,
}

#[derive(Debug, Subcommand)]
enum EvidenceCmd {
    /// Export the records of one exchange, a time range, or a data subject.
    Export {
        /// The X-Road-Id of the exchange.
        #[arg(long, conflicts_with_all = ["from", "subject"])]
        id: Option<String>,
        /// Start of a time range (Unix seconds or YYYY-MM-DDTHH:MM:SSZ); needs --to.
        #[arg(long, requires = "to", conflicts_with = "subject")]
        from: Option<String>,
        /// End of the time range (exclusive).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// A data subject (X-Road-Data-Subject), found through the HMAC index.
        #[arg(long)]
        subject: Option<String>,
        /// Leave the bodies out (the records stay verifiable: signatures cover body hashes).
        #[arg(long)]
        no_bodies: bool,
        /// Read the database directly (the server must be stopped), with a progress bar.
        #[arg(long)]
        offline: bool,
        /// Where to write the bundle (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle offline, with only the instance anchor(s): exits 0 only if everything
    /// holds.
    Verify {
        file: PathBuf,
        /// The instance anchor; repeat it for evidence of a cross-border exchange, with the
        /// anchor of each instance (docs/federation.md).
        #[arg(long = "anchor", required = true)]
        anchors: Vec<PathBuf>,
        /// Independent witnesses that must have cosigned the checkpoint.
        #[arg(long, default_value_t = 1)]
        require_cosignatures: usize,
    },
}

#[derive(Debug, Subcommand)]
enum MessagelogCmd {
    /// Move records older than N days to hash-linked archive files (server stopped).
    Archive {
        #[arg(long)]
        older_than_days: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
    /// Add a service, or replace the one with this identifier.
    Add {
        /// INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE
        id: ServiceId,
        /// Base URL of the provider's information system (http:// or https://); the request's
        /// path and query are appended.
        #[arg(long)]
        url: String,
        /// How long the information system may take to answer.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// The service's OpenAPI document, served by the `getOpenAPI` metaservice.
        #[arg(long)]
        openapi: Option<PathBuf>,
        /// What residents see the service as in one language, `LANG=NAME`
        /// (`--name ja=住民票 --name en="Resident record"`); repeatable.
        #[arg(long = "name", value_parser = parse_name)]
        names: Vec<(String, String)>,
    },
    List,
    /// Remove a service and every grant for it.
    Remove {
        id: ServiceId,
    },
}

#[derive(Debug, Subcommand)]
enum SuppressionCmd {
    /// Hide (or with --delay, delay) residents' view of a client's accesses; replaces the rule
    /// for the same client.
    Add {
        /// An organisation (INSTANCE/CLASS/MEMBER) or one subsystem (…/SUBSYSTEM).
        client: SuppressedClient,
        /// Show records once they are this old: seconds, or a duration like `90d`, `12h`,
        /// `1h 30m`. Without it, the records are hidden while the rule exists.
        #[arg(long, value_parser = parse_duration_secs)]
        delay: Option<u64>,
        /// Why (legal basis); recorded in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Remove the rule for a client: its accesses are shown again.
    Remove {
        client: SuppressedClient,
    },
    List,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// The keys, and whether the configuration lists them and which one is in use.
    List,
    /// Make a new signing key and ask the registry to list it; once the operator approves it,
    /// the server signs with it and the old one is retired after `keys.retire_previous_after_secs`.
    Rotate {
        /// The member whose key it is; default this server's owner.
        #[arg(long)]
        member: Option<MemberId>,
    },
}

#[derive(Debug, Subcommand)]
enum ClientAuthCmd {
    /// Set how a hosted subsystem's information systems (or those of this server's owner
    /// member, calling as itself: INSTANCE/CLASS/MEMBER) must connect; replaces its rule.
    Set {
        subsystem: ClientId,
        /// `http` (plain or HTTPS, no certificate), `https`, or `https-cert` (HTTPS with a
        /// certificate given with --cert).
        #[arg(long)]
        connection: Connection,
        /// A PEM file of an information system's client certificate (for https-cert;
        /// repeatable). Only its SHA-256 is kept.
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
    },
    /// Remove a subsystem's rule: it has the default again.
    Remove {
        subsystem: ClientId,
    },
    List,
}

/// The SHA-256 (hex) of the certificate in each PEM file, in order.
fn cert_hashes(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for file in files {
        let pem =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let certs = certs::certs_from_pem(&pem)
            .with_context(|| format!("{} holds no PEM certificate", file.display()))?;
        let leaf = certs
            .first()
            .with_context(|| format!("{} holds no certificate", file.display()))?;
        out.push(hex::encode(certs::cert_sha256(leaf)));
    }
    Ok(out)
}

/// `LANG=NAME`, as `service add --name` takes it.
fn parse_name(s: &str) -> Result<(String, String), String> {
    let (lang, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not LANG=NAME (ja=住民票)"))?;
    Ok((lang.trim().to_owned(), name.trim().to_owned()))
}

/// Plain seconds, or a duration like `90d`, `12h`, `30m`, `45s` or `1h 30m` (humantime's
/// units), in whole seconds.
fn parse_duration_secs(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 90d, 12h, 30m or 45s: {e}"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{s:?} is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}

#[derive(Debug, Subcommand)]
enum AccessCmd {
    /// Allow a subsystem, a member calling as itself or a global group to call a service (or
    /// one method + path pattern).
    Grant(GrantArgs),
    /// Remove a grant; give the same arguments it was granted with.
    Revoke(GrantArgs),
    List,
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE
    service: ServiceId,
    /// A subsystem (INSTANCE/CLASS/MEMBER/SUBSYSTEM), a member calling as itself
    /// (INSTANCE/CLASS/MEMBER) or a global group (INSTANCE/GROUPCODE).
    subject: Subject,
    /// Only this method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, TRACE); default any.
    #[arg(long)]
    method: Option<String>,
    /// Only paths matching this pattern (`/records/*`, `/records/**`); default the whole service.
    #[arg(long)]
    path: Option<String>,
}

impl GrantArgs {
    fn into_grant(self) -> anyhow::Result<Grant> {
        let method = self
            .method
            .map(|m| http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
            .transpose()
            .context("--method")?;
        Ok(Grant {
            service: self.service,
            subject: self.subject,
            method,
            path: self.path,
        })
    }
}

mod evidence_cli;
mod setup_cli;

fn main() -> std::process::ExitCode {
    runtime::cli::finish(main_with(Cli::parse()))
}

fn main_with(cli: Cli) -> anyhow::Result<()> {
    if let Command::Generated(generated) = cli.command {
        return Ok(generated.run(<Cli as clap::CommandFactory>::command())?);
    }
    if let Command::Evidence(EvidenceCmd::Verify {
        file,
        anchors,
        require_cosignatures,
    }) = &cli.command
    {
        let valid = evidence_cli::verify(file, anchors, *require_cosignatures, cli.json)?;
        std::process::exit(if valid { 0 } else { 1 });
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Evidence(EvidenceCmd::Export {
            id,
            from,
            to,
            subject,
            no_bodies,
            offline,
            out,
        }) => {
            let query = security_server::log::EvidenceQuery {
                message_id: id,
                from_ms: from
                    .as_deref()
                    .map(evidence_cli::parse_time_ms)
                    .transpose()?,
                to_ms: to.as_deref().map(evidence_cli::parse_time_ms).transpose()?,
                subject,
                include_bodies: Some(!no_bodies),
            };
            evidence_cli::export(&cli.config, query, &out, offline).await
        }
        Command::Evidence(EvidenceCmd::Verify { .. }) | Command::Generated(_) => Ok(()),
        Command::Anchor(AnchorCmd::Show) => setup_cli::show_anchor(&cli.config),
        Command::Declared(DeclaredCmd::Check { file }) => {
            setup_cli::check_declared(&cli.config, file).await
        }
        Command::Messagelog(MessagelogCmd::Archive { older_than_days }) => {
            evidence_cli::archive(&cli.config, older_than_days)
        }
        Command::Init {
            id,
            anchor,
            client_proxy,
            server_proxy,
            advertise,
            admin,
            data_dir,
        } => setup_cli::init(
            &cli.config,
            id,
            &anchor,
            setup_cli::Listen {
                client_proxy: &client_proxy,
                server_proxy: &server_proxy,
                advertise,
                admin: &admin,
            },
            data_dir,
        ),
        Command::Enroll { token, wait } => {
            setup_cli::enroll(&cli.config, token.as_deref(), wait).await
        }
        Command::BackupKey(args) => Ok(args.run()?),
        Command::Restore(args) => {
            let report = security_server::backup::restore(
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
                "  message log:    {} records (the tree is whole)",
                report.log_records
            );
            println!(
                "next: security-server --config {} run",
                report.config.display()
            );
            Ok(())
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            runtime::init_tracing(config.log_format == LogFormat::Json);
            let listeners = security_server::Listeners::bind(&config)
                .await
                .context("binding the listeners")?;
            let server =
                security_server::start(&config, listeners, Arc::new(certs::SystemClock)).await?;
            server.run_until(runtime::signal()).await;
            Ok(())
        }
        command @ (Command::Status
        | Command::RefreshGlobalconf
        | Command::Renew
        | Command::Keys(_)
        | Command::Service(_)
        | Command::Access(_)
        | Command::Suppression(_)
        | Command::ClientAuth(_)
        | Command::Audit { .. }
        | Command::Operational { .. }
        | Command::Backup(_)) => {
            let config = Config::load(&cli.config)?;
            let mut client = AdminClient::from_config(&config)?;
            if matches!(command, Command::Backup(_)) {
                // The server answers once the whole backup is written.
                client = client.with_timeout(std::time::Duration::from_secs(24 * 3600));
            }
            dispatch(
                command,
                Call {
                    client: &client,
                    json: cli.json,
                },
            )?
            .await
        }
    }
}

/// What to do with the operation a command names: [`Call`] sends it, the tests record it.
trait WithOp {
    type Output;
    fn with<Op: AdminOp>(self, op: Op) -> Self::Output;
}

/// Maps an admin command to its operation and request (see `security_server::admin::ops`).
/// `evidence export` is not here: it writes the bundle to a file, or reads the database itself.
fn dispatch<W: WithOp>(command: Command, w: W) -> anyhow::Result<W::Output> {
    Ok(match command {
        Command::Status => w.with(ops::Status),
        Command::RefreshGlobalconf => w.with(ops::RefreshGlobalconf),
        Command::Renew => w.with(ops::RenewTls),
        Command::Keys(KeysCmd::List) => w.with(ops::ListKeys),
        Command::Keys(KeysCmd::Rotate { member }) => w.with(ops::RotateKey { member }),
        Command::Audit { limit } => w.with(ops::Audit { limit: Some(limit) }),
        Command::Operational { from, to, limit } => w.with(ops::QueryOperational {
            from: evidence_cli::parse_time_ms(&from)?,
            to: match to {
                Some(to) => evidence_cli::parse_time_ms(&to)?,
                None => jiff::Timestamp::now().as_millisecond(),
            },
            limit: Some(limit),
        }),
        Command::Backup(runtime::backup::BackupArgs { recipient, out }) => {
            w.with(ops::CreateBackup {
                recipient,
                // The server writes the file: a path relative to where the command runs means
                // nothing to it.
                out: std::path::absolute(&out).with_context(|| out.display().to_string())?,
            })
        }
        Command::Service(cmd) => match cmd {
            ServiceCmd::Add {
                id,
                url,
                timeout_secs,
                openapi,
                names,
            } => {
                let openapi = openapi
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("reading {}", p.display()))
                    })
                    .transpose()?;
                w.with(ops::AddService(ServiceEntry {
                    id,
                    url,
                    timeout_secs,
                    openapi,
                    names: names.into_iter().collect(),
                }))
            }
            ServiceCmd::List => w.with(ops::ListServices),
            ServiceCmd::Remove { id } => w.with(ops::RemoveService { id }),
        },
        Command::Access(cmd) => match cmd {
            AccessCmd::Grant(args) => w.with(ops::GrantAccess(args.into_grant()?)),
            AccessCmd::Revoke(args) => w.with(ops::RevokeAccess(args.into_grant()?)),
            AccessCmd::List => w.with(ops::ListAccess),
        },
        Command::Suppression(cmd) => match cmd {
            SuppressionCmd::Add {
                client,
                delay,
                reason,
            } => w.with(ops::AddSuppression(Suppression {
                client,
                delay_secs: delay,
                reason,
            })),
            SuppressionCmd::Remove { client } => w.with(ops::RemoveSuppression { client }),
            SuppressionCmd::List => w.with(ops::ListSuppressions),
        },
        Command::ClientAuth(cmd) => match cmd {
            ClientAuthCmd::Set {
                subsystem,
                connection,
                certs,
            } => w.with(ops::SetClientAuth(ClientAuth {
                subsystem,
                connection,
                certs: cert_hashes(&certs)?,
            })),
            ClientAuthCmd::Remove { subsystem } => w.with(ops::RemoveClientAuth { subsystem }),
            ClientAuthCmd::List => w.with(ops::ListClientAuth),
        },
        Command::Init { .. }
        | Command::Enroll { .. }
        | Command::Run
        | Command::Evidence(_)
        | Command::Messagelog(_)
        | Command::Anchor(_)
        | Command::Declared(_)
        | Command::BackupKey(_)
        | Command::Restore(_)
        | Command::Generated(_) => bail!("not an admin command"),
    })
}

/// Sends the operation and prints its answer: the JSON body with `--json` (`null` when there is
/// none), else the operation's text.
struct Call<'a> {
    client: &'a AdminClient,
    json: bool,
}

impl<'a> WithOp for Call<'a> {
    type Output = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

    fn with<Op: AdminOp>(self, op: Op) -> Self::Output {
        Box::pin(async move {
            let answer = self.client.call(&op).await?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&answer.to_json()?)?);
            } else {
                print!("{}", op.text(&answer));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use security_server::admin::ops::Endpoint as _;

    use super::*;

    #[test]
    fn service_names_are_lang_equals_name() {
        assert_eq!(
            parse_name("ja=住民票"),
            Ok(("ja".to_owned(), "住民票".to_owned()))
        );
        assert_eq!(
            parse_name("en = Resident record"),
            Ok(("en".to_owned(), "Resident record".to_owned()))
        );
        assert!(parse_name("住民票").is_err());
    }

    #[test]
    fn suppression_delays_take_seconds_or_a_unit() {
        assert_eq!(parse_duration_secs("45"), Ok(45));
        assert_eq!(parse_duration_secs("45s"), Ok(45));
        assert_eq!(parse_duration_secs("30m"), Ok(1800));
        assert_eq!(parse_duration_secs("12h"), Ok(43_200));
        assert_eq!(parse_duration_secs("90d"), Ok(7_776_000));
        // humantime's other units and sums work too.
        assert_eq!(parse_duration_secs("1w"), Ok(604_800));
        assert_eq!(parse_duration_secs("1h 30m"), Ok(5400));
        assert_eq!(parse_duration_secs("1.5d"), Ok(129_600));
        for bad in ["", "d", "-1d", "99999999999999999999d", "1500ms", "1x"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_suppression_command_line_parses_into_a_rule() {
        let cli = Cli::try_parse_from([
            "security-server",
            "suppression",
            "add",
            "JP/GOV/npa",
            "--delay",
            "90d",
            "--reason",
            "investigation",
        ])
        .unwrap();
        let Command::Suppression(SuppressionCmd::Add {
            client,
            delay,
            reason,
        }) = cli.command
        else {
            panic!("not a suppression add: {:?}", cli.command);
        };
        assert_eq!(client.to_string(), "JP/GOV/npa");
        assert_eq!(delay, Some(7_776_000));
        assert_eq!(reason, "investigation");
        assert!(
            Cli::try_parse_from([
                "security-server",
                "suppression",
                "add",
                "JP/GOV",
                "--reason",
                "x"
            ])
            .is_err()
        );
    }

    /// One command line per admin operation printed through [`Call`].
    const ADMIN_COMMANDS: &[&[&str]] = &[
        &["status"],
        &["refresh-globalconf"],
        &["renew"],
        &["keys", "list"],
        &["keys", "rotate", "--member", "JP/MUN/131016"],
        &["audit"],
        &[
            "service",
            "add",
            "JP/MUN/131016/records/residentRecord",
            "--url",
            "http://127.0.0.1:9000",
            "--name",
            "ja=住民票",
            "--name",
            "en=Resident record",
        ],
        &["service", "list"],
        &["service", "remove", "JP/MUN/131016/records/residentRecord"],
        &[
            "access",
            "grant",
            "JP/MUN/131016/records/residentRecord",
            "JP/GOV/digital-agency/portal",
        ],
        &[
            "access",
            "revoke",
            "JP/MUN/131016/records/residentRecord",
            "JP/GOV/digital-agency/portal",
        ],
        &["access", "list"],
        &["suppression", "add", "JP/GOV/npa", "--reason", "x"],
        &["suppression", "remove", "JP/GOV/npa"],
        &["suppression", "list"],
        &[
            "client-auth",
            "set",
            "JP/MUN/131016/records",
            "--connection",
            "https",
        ],
        &["client-auth", "remove", "JP/MUN/131016/records"],
        &["client-auth", "list"],
        &["backup", "--recipient", "age1x", "--out", "b.age"],
        &["operational", "--from", "0"],
    ];

    /// `evidence export` sends `ops::ExportEvidence` itself (see `evidence_cli::export`).
    const EVIDENCE_EXPORT: &[&str] = &["evidence", "export", "--id", "x", "--out", "b.pb"];

    /// Records which operation a command names.
    struct Named;

    impl WithOp for Named {
        type Output = (String, &'static str);
        fn with<Op: AdminOp>(self, _: Op) -> Self::Output {
            (Op::METHOD.to_string(), Op::PATH)
        }
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("security-server").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn every_admin_operation_has_a_command() {
        let mut named = std::collections::BTreeSet::new();
        for args in ADMIN_COMMANDS {
            let op =
                dispatch(parse(args).command, Named).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(named.insert(op.clone()), "{args:?} names {op:?} again");
        }
        assert!(matches!(
            parse(EVIDENCE_EXPORT).command,
            Command::Evidence(EvidenceCmd::Export { offline: false, .. })
        ));
        assert!(dispatch(parse(EVIDENCE_EXPORT).command, Named).is_err());
        named.insert((
            ops::ExportEvidence::METHOD.to_string(),
            ops::ExportEvidence::PATH,
        ));
        let all: std::collections::BTreeSet<_> = ops::table()
            .into_iter()
            .map(|op| (op.method.to_string(), op.path))
            .collect();
        assert_eq!(named, all, "commands and operations differ");
    }

    #[test]
    fn every_admin_command_is_listed_above() {
        let mut commands =
            runtime::admin::checks::command_leaves(&<Cli as clap::CommandFactory>::command());
        let not_admin: &[&[&str]] = &[
            &["init"],
            &["enroll"],
            &["run"],
            &["evidence", "verify"],
            &["messagelog", "archive"],
            &["anchor", "show"],
            &["completions"],
            &["man-pages"],
            &["backup-key"],
            &["restore"],
            &["declared", "check"],
        ];
        for args in ADMIN_COMMANDS
            .iter()
            .chain([&EVIDENCE_EXPORT])
            .chain(not_admin)
        {
            commands
                .retain(|c| !args.starts_with(&c.iter().map(String::as_str).collect::<Vec<_>>()));
        }
        commands.retain(|c| !c.iter().any(|part| part == "help"));
        assert!(commands.is_empty(), "not in ADMIN_COMMANDS: {commands:?}");
    }
}
