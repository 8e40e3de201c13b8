//! The `security-server` binary: reads the configuration, then either prepares the server
//! (`init`, `enroll`), runs it (`run`) until SIGINT/SIGTERM, or talks to a running one's admin API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use globalconf::{Anchor, SecurityServerId};
use security_server::Config;
use security_server::config::LogFormat;
use security_server::identity::{self, EnrollmentStatus, Paths};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
            let body = admin_call(&cli.config, http::Method::GET, "/v1/status").await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
        Command::RefreshGlobalconf => {
            let body =
                admin_call(&cli.config, http::Method::POST, "/v1/globalconf/refresh").await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
    }
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

async fn admin_call(
    config_path: &Path,
    method: http::Method,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let config = Config::load(config_path)?;
    let token_bytes = certs::read_secret_file(&Paths::new(&config.data_dir).admin_token())?;
    let token = String::from_utf8_lossy(&token_bytes).trim().to_owned();
    let url = format!("http://{}{path}", config.admin.listen);
    let response = runtime::HttpClient::plain()
        .send(method, &url, Some(&token), None)
        .await?;
    let body: serde_json::Value = response
        .json()
        .with_context(|| format!("unreadable answer from {url}"))?;
    if !response.is_success() {
        bail!("{}: {}", response.status, body);
    }
    Ok(body)
}
