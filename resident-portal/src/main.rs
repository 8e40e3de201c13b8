//! `resident-portal --config PATH`: serves the resident transparency portal until Ctrl-C or
//! SIGTERM. (`completions SHELL` prints a shell completion script.)

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use resident_portal::Config;

#[derive(Debug, Parser)]
#[command(
    name = "resident-portal",
    version,
    about = "The resident transparency portal: who accessed my data, asked through X-Road",
    subcommand_negates_reqs = true
)]
struct Args {
    /// The configuration file (see docs/portal.md).
    #[arg(long, env = "PORTAL_CONFIG", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    generated: Option<runtime::cli::Generated>,
}

fn main() -> std::process::ExitCode {
    runtime::cli::finish(main_with(Args::parse()))
}

fn main_with(args: Args) -> anyhow::Result<()> {
    if let Some(generated) = args.generated {
        return Ok(generated.run(<Args as clap::CommandFactory>::command())?);
    }
    let path = args.config.context("--config is required")?;
    let config = Config::load(&path).with_context(|| format!("loading {}", path.display()))?;
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
