//! `resident-portal --config PATH`: serves the resident transparency portal until Ctrl-C or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use resident_portal::Config;

#[derive(Debug, Parser)]
#[command(
    name = "resident-portal",
    about = "The resident transparency portal: who accessed my data, asked through X-Road"
)]
struct Args {
    /// The configuration file (see docs/portal.md).
    #[arg(long, env = "PORTAL_CONFIG")]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config =
        Config::load(&args.config).with_context(|| format!("loading {}", args.config.display()))?;
    runtime::init_tracing(config.log_format == "json");
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        security_server = %config.security_server,
        "resident portal listening"
    );
    resident_portal::serve(listener, config, runtime::signal())
        .await
        .context("serving the portal")?;
    tracing::info!("resident portal stopped");
    Ok(())
}
