//! The `security-server` binary: reads the configuration, then either prepares the server
//! (`init`, `enroll`), runs it (`run`) until SIGINT/SIGTERM, or talks to a running one's admin API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use exchange::access::{Grant, Subject};
use globalconf::{Anchor, SecurityServerId, ServiceId};
use security_server::Config;
use security_server::config::LogFormat;
use security_server::identity::{self, EnrollmentStatus, Paths};
use security_server::serverconf::{AuditEntry, ServiceEntry};
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
    /// Recent changes of services, access rights and suppression rules (admin API).
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
    /// Verify a bundle offline, with only the instance anchor: exits 0 only if everything holds.
    Verify {
        file: PathBuf,
        #[arg(long)]
        anchor: PathBuf,
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
        /// Show records once they are this old: seconds, or a number with s, m, h or d
        /// (`90d`). Without it, the records are hidden while the rule exists.
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

/// `90d`, `12h`, `30m`, `45s` or plain seconds.
fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90d, 12h, 30m or 45s"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unit of {s:?} is not s, m, h or d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[derive(Debug, Subcommand)]
enum AccessCmd {
    /// Allow a subsystem or a global group to call a service (or one method + path pattern).
    Grant(GrantArgs),
    /// Remove a grant; give the same arguments it was granted with.
    Revoke(GrantArgs),
    List,
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICECODE
    service: ServiceId,
    /// A subsystem (INSTANCE/CLASS/MEMBER/SUBSYSTEM) or a global group (INSTANCE/GROUPCODE).
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Evidence(EvidenceCmd::Verify {
        file,
        anchor,
        require_cosignatures,
    }) = &cli.command
    {
        let valid = evidence_cli::verify(file, anchor, *require_cosignatures, cli.json)?;
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
        Command::Evidence(EvidenceCmd::Verify { .. }) => Ok(()),
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
        } => init(
            &cli.config,
            id,
            &anchor,
            &client_proxy,
            &server_proxy,
            advertise,
            &admin,
        ),
        Command::Enroll { token, wait } => enroll(&cli.config, token.as_deref(), wait).await,
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
        Command::Status => {
            let (_, body) = admin_call(&cli.config, http::Method::GET, "/v1/status", None).await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        Command::RefreshGlobalconf => {
            let (_, body) = admin_call(
                &cli.config,
                http::Method::POST,
                "/v1/globalconf/refresh",
                None,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        Command::Service(cmd) => service(&cli.config, cli.json, cmd).await,
        Command::Access(cmd) => access(&cli.config, cli.json, cmd).await,
        Command::Suppression(cmd) => suppression(&cli.config, cli.json, cmd).await,
        Command::Audit { limit } => {
            let (_, body) = admin_call(
                &cli.config,
                http::Method::GET,
                &format!("/v1/audit?limit={limit}"),
                None,
            )
            .await?;
            print(cli.json, &body, |body| {
                let entries: Vec<AuditEntry> = serde_json::from_value(body.clone())?;
                if entries.is_empty() {
                    println!("no audit records");
                }
                for e in entries {
                    println!("{:>6}  {}  {:<15} {}", e.seq, e.time, e.action, e.details);
                }
                Ok(())
            })
        }
    }
}

/// Prints the admin API's answer as JSON, or with `text`.
fn print(
    json: bool,
    body: &serde_json::Value,
    text: impl FnOnce(&serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(body)?);
        Ok(())
    } else {
        text(body).context("unexpected answer from the admin API")
    }
}

async fn service(config: &Path, json: bool, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Add {
            id,
            url,
            timeout_secs,
            openapi,
        } => {
            let openapi = openapi
                .map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()?;
            let entry = ServiceEntry {
                id,
                url,
                timeout_secs,
                openapi,
            };
            let (status, body) = admin_call(
                config,
                http::Method::POST,
                "/v1/services",
                Some(&serde_json::to_value(&entry)?),
            )
            .await?;
            print(json, &body, |_| {
                let verb = if status == http::StatusCode::CREATED {
                    "added"
                } else {
                    "replaced"
                };
                println!("{verb} service {}", describe_service(&entry));
                Ok(())
            })
        }
        ServiceCmd::List => {
            let (_, body) = admin_call(config, http::Method::GET, "/v1/services", None).await?;
            print(json, &body, |body| {
                let services: Vec<ServiceEntry> = serde_json::from_value(body.clone())?;
                if services.is_empty() {
                    println!("no services");
                }
                for s in &services {
                    println!("{}", describe_service(s));
                }
                Ok(())
            })
        }
        ServiceCmd::Remove { id } => {
            let path = format!("/v1/services/{}", identity::path_segment(&id.to_string()));
            let (_, body) = admin_call(config, http::Method::DELETE, &path, None).await?;
            print(json, &body, |_| {
                println!("removed service {id} and its grants");
                Ok(())
            })
        }
    }
}

fn describe_service(s: &ServiceEntry) -> String {
    let openapi = s
        .openapi
        .as_ref()
        .map(|doc| format!("  openapi {} bytes", doc.len()))
        .unwrap_or_default();
    format!("{}  {}  timeout {} s{openapi}", s.id, s.url, s.timeout_secs)
}

async fn access(config: &Path, json: bool, cmd: AccessCmd) -> anyhow::Result<()> {
    match cmd {
        AccessCmd::Grant(args) => {
            let grant = args.into_grant()?;
            let (status, body) = admin_call(
                config,
                http::Method::POST,
                "/v1/access",
                Some(&serde_json::to_value(&grant)?),
            )
            .await?;
            print(json, &body, |_| {
                if status == http::StatusCode::CREATED {
                    println!("granted {}", describe_grant(&grant));
                } else {
                    println!("already granted: {}", describe_grant(&grant));
                }
                Ok(())
            })
        }
        AccessCmd::Revoke(args) => {
            let grant = args.into_grant()?;
            let (_, body) = admin_call(
                config,
                http::Method::POST,
                "/v1/access/revoke",
                Some(&serde_json::to_value(&grant)?),
            )
            .await?;
            print(json, &body, |_| {
                println!("revoked {}", describe_grant(&grant));
                Ok(())
            })
        }
        AccessCmd::List => {
            let (_, body) = admin_call(config, http::Method::GET, "/v1/access", None).await?;
            print(json, &body, |body| {
                let grants: Vec<Grant> = serde_json::from_value(body.clone())?;
                if grants.is_empty() {
                    println!("no grants: every call is denied");
                }
                for g in &grants {
                    println!("{}", describe_grant(g));
                }
                Ok(())
            })
        }
    }
}

async fn suppression(config: &Path, json: bool, cmd: SuppressionCmd) -> anyhow::Result<()> {
    match cmd {
        SuppressionCmd::Add {
            client,
            delay,
            reason,
        } => {
            let rule = Suppression {
                client,
                delay_secs: delay,
                reason,
            };
            let (status, body) = admin_call(
                config,
                http::Method::POST,
                "/v1/suppressions",
                Some(&serde_json::to_value(&rule)?),
            )
            .await?;
            print(json, &body, |_| {
                let verb = if status == http::StatusCode::CREATED {
                    "added"
                } else {
                    "unchanged or replaced"
                };
                println!("{verb}: {}", describe_suppression(&rule));
                Ok(())
            })
        }
        SuppressionCmd::Remove { client } => {
            let (_, body) = admin_call(
                config,
                http::Method::POST,
                "/v1/suppressions/remove",
                Some(&serde_json::json!({ "client": client })),
            )
            .await?;
            print(json, &body, |_| {
                println!("removed the rule for {client}");
                Ok(())
            })
        }
        SuppressionCmd::List => {
            let (_, body) = admin_call(config, http::Method::GET, "/v1/suppressions", None).await?;
            print(json, &body, |body| {
                let rules: Vec<Suppression> = serde_json::from_value(body.clone())?;
                if rules.is_empty() {
                    println!("no suppression rules: residents see every access");
                }
                for r in &rules {
                    println!("{}", describe_suppression(r));
                }
                Ok(())
            })
        }
    }
}

fn describe_suppression(r: &Suppression) -> String {
    let what = match r.delay_secs {
        None => "hidden".to_owned(),
        Some(d) => format!("delayed {d} s ({:.1} days)", d as f64 / 86_400.0),
    };
    format!("{}  {what}  reason: {}", r.client, r.reason)
}

fn describe_grant(g: &Grant) -> String {
    format!(
        "{}  to {}  {} {}",
        g.service,
        g.subject,
        g.method.as_ref().map_or("any method", |m| m.as_str()),
        g.path.as_deref().unwrap_or("(whole service)")
    )
}

fn init(
    config_path: &Path,
    id: SecurityServerId,
    anchor_path: &Path,
    client_proxy: &str,
    server_proxy: &str,
    advertise: Vec<String>,
    admin: &str,
) -> anyhow::Result<()> {
    let anchor = Anchor::load(anchor_path).context("reading the anchor")?;
    if !config_path.exists() {
        let mut config = Config {
            server_id: Some(id.clone()),
            ..Config::default()
        };
        config.client_proxy.listen = client_proxy.parse().context("--client-proxy")?;
        config.server_proxy.listen = server_proxy.parse().context("--server-proxy")?;
        config.server_proxy.advertise = advertise;
        config.admin.listen = admin.parse().context("--admin")?;
        if let Some(dir) = config_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        certs::write_file_atomic(config_path, config.to_toml()?.as_bytes())?;
        println!("wrote {}", config_path.display());
    }
    let config = Config::load(config_path)?;
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

async fn enroll(config_path: &Path, token: Option<&str>, wait: u64) -> anyhow::Result<()> {
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

/// Calls the running server's admin API with the token from `data_dir/admin-token`; answers the
/// status and the JSON body (`null` when there is none). An error answer becomes an error.
async fn admin_call(
    config_path: &Path,
    method: http::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(http::StatusCode, serde_json::Value)> {
    let config = Config::load(config_path)?;
    let token_bytes = certs::read_secret_file(&Paths::new(&config.data_dir).admin_token())?;
    let token = String::from_utf8_lossy(&token_bytes).trim().to_owned();
    let url = format!("http://{}{path}", config.admin.listen);
    let body = body
        .map(|b| serde_json::to_vec(b).map(|bytes| ("application/json", bytes.into())))
        .transpose()?;
    let response = runtime::HttpClient::plain()
        .send(method, &url, Some(&token), body)
        .await?;
    let answer: serde_json::Value = if response.body.is_empty() {
        serde_json::Value::Null
    } else {
        response
            .json()
            .with_context(|| format!("unreadable answer from {url}"))?
    };
    if !response.is_success() {
        match (answer["type"].as_str(), answer["message"].as_str()) {
            (Some(kind), Some(message)) => bail!("{kind}: {message} (HTTP {})", response.status),
            _ => bail!("HTTP {}: {answer}", response.status),
        }
    }
    Ok((response.status, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppression_delays_take_seconds_or_a_unit() {
        assert_eq!(parse_duration_secs("45"), Ok(45));
        assert_eq!(parse_duration_secs("45s"), Ok(45));
        assert_eq!(parse_duration_secs("30m"), Ok(1800));
        assert_eq!(parse_duration_secs("12h"), Ok(43_200));
        assert_eq!(parse_duration_secs("90d"), Ok(7_776_000));
        for bad in ["", "d", "1w", "-1d", "1.5d", "99999999999999999999d"] {
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
}
